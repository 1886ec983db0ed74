output "traffic_mirror_target_id" {
  description = "The mirror target (tmt-...)."
  value       = aws_ec2_traffic_mirror_target.capd.id
}

output "traffic_mirror_filter_id" {
  description = "The mirror filter (tmf-...); add rules to it to mirror more or less."
  value       = aws_ec2_traffic_mirror_filter.capd.id
}

output "traffic_mirror_session_ids" {
  description = "Mirror session id (tms-...) per source ENI."
  value       = { for eni, session in aws_ec2_traffic_mirror_session.capd : eni => session.id }
}

output "virtual_network_id" {
  description = "The sessions' VNI: capctl stream --decap vxlan --vni <this>."
  value       = var.virtual_network_id
}

output "security_group_id" {
  description = "Security group allowing UDP 4789 from the sources (attached to the target ENI; attach it to the instances behind an NLB)."
  value       = aws_security_group.target.id
}

output "instance_profile_name" {
  description = "Instance profile with AmazonSSMManagedInstanceCore for the capd instances (null when create_instance_profile = false)."
  value       = one(aws_iam_instance_profile.capd[*].name)
}

output "iam_role_name" {
  description = "The role inside that instance profile, to attach more policies to."
  value       = one(aws_iam_role.capd[*].name)
}
