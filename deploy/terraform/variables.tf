variable "name" {
  description = "Prefix for the names and Name tags of everything this module makes."
  type        = string
  default     = "capd"
}

variable "vpc_id" {
  description = "VPC of the mirror target (its security group is made here)."
  type        = string
}

variable "target_network_interface_id" {
  description = "ENI of the instance running capd that receives the mirrored traffic. Set this or target_nlb_arn."
  type        = string
  default     = null
}

variable "target_nlb_arn" {
  description = "ARN of a Network Load Balancer (UDP 4789 listener) in front of several capd instances. Set this or target_network_interface_id."
  type        = string
  default     = null
}

variable "source_network_interface_ids" {
  description = "ENIs whose traffic is mirrored: one mirror session each."
  type        = list(string)
}

variable "source_cidr_blocks" {
  description = "Addresses the mirrored VXLAN packets come from (the source ENIs' primary IPs or their subnets); UDP 4789 is allowed from these to the target."
  type        = list(string)
}

variable "virtual_network_id" {
  description = "VXLAN network id (VNI) of the sessions; capctl --vni selects it. null lets AWS pick one."
  type        = number
  default     = 4242
}

variable "packet_length" {
  description = "Bytes of each packet to mirror (null = the whole packet, up to the MTU); capd recovers the original length from the inner IP header."
  type        = number
  default     = null
}

variable "session_number" {
  description = "Priority of the sessions (1-32766, lower first) when a source ENI has several."
  type        = number
  default     = 1
}

variable "mirror_cidr_blocks_ipv4" {
  description = "IPv4 peer ranges: traffic of the sources with these addresses is mirrored, both directions."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "mirror_cidr_blocks_ipv6" {
  description = "IPv6 peer ranges, likewise; empty to mirror no IPv6."
  type        = list(string)
  default     = ["::/0"]
}

variable "mirror_protocol" {
  description = "IP protocol number to mirror (6 TCP, 17 UDP, 1 ICMP); null for all."
  type        = number
  default     = null
}

variable "mirror_amazon_dns" {
  description = "Also mirror traffic to the Amazon DNS resolver (network_services = amazon-dns)."
  type        = bool
  default     = false
}

variable "create_instance_profile" {
  description = "Make an IAM role and instance profile with AmazonSSMManagedInstanceCore for the capd instances."
  type        = bool
  default     = true
}

variable "recordings_bucket_arn" {
  description = "Optional S3 bucket ARN: the instance profile may read bundles from it and write recordings under recordings/ (capd-install, capd-collect-recordings)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
