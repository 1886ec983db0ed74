# Traffic Mirroring to capd: sources' ENIs -> filter -> session (VXLAN, UDP 4789, VNI) -> target
# (the capd instance's ENI, or an NLB in front of several). On the target: capctl stream
# --decap vxlan --vni <virtual_network_id>.

locals {
  target_is_eni = var.target_network_interface_id != null
  tags          = merge({ "managed-by" = "capd-terraform" }, var.tags)
  # One accept rule per (direction, address family, range): ingress and egress, IPv4 and IPv6.
  rules = flatten([
    for direction in ["ingress", "egress"] : [
      for index, cidr in concat(var.mirror_cidr_blocks_ipv4, var.mirror_cidr_blocks_ipv6) : {
        key         = "${direction}-${index}"
        direction   = direction
        cidr        = cidr
        ipv6        = strcontains(cidr, ":")
        rule_number = 100 + index
      }
    ]
  ])
}

data "aws_partition" "current" {}

resource "aws_ec2_traffic_mirror_target" "capd" {
  description               = "${var.name}: capd mirror target"
  network_interface_id      = var.target_network_interface_id
  network_load_balancer_arn = var.target_nlb_arn
  tags                      = merge(local.tags, { Name = "${var.name}-target" })

  lifecycle {
    precondition {
      condition     = (var.target_network_interface_id == null) != (var.target_nlb_arn == null)
      error_message = "Set exactly one of target_network_interface_id and target_nlb_arn."
    }
  }
}

resource "aws_ec2_traffic_mirror_filter" "capd" {
  description      = "${var.name}: traffic mirrored to capd"
  network_services = var.mirror_amazon_dns ? ["amazon-dns"] : []
  tags             = merge(local.tags, { Name = "${var.name}-filter" })
}

# The peer range is the far end: the source address of ingress, the destination of egress.
resource "aws_ec2_traffic_mirror_filter_rule" "capd" {
  for_each                 = { for rule in local.rules : rule.key => rule }
  description              = "${var.name}: ${each.value.direction} ${each.value.cidr}"
  traffic_mirror_filter_id = aws_ec2_traffic_mirror_filter.capd.id
  traffic_direction        = each.value.direction
  rule_number              = each.value.rule_number
  rule_action              = "accept"
  protocol                 = var.mirror_protocol
  source_cidr_block        = each.value.direction == "ingress" ? each.value.cidr : (each.value.ipv6 ? "::/0" : "0.0.0.0/0")
  destination_cidr_block   = each.value.direction == "egress" ? each.value.cidr : (each.value.ipv6 ? "::/0" : "0.0.0.0/0")
}

resource "aws_ec2_traffic_mirror_session" "capd" {
  for_each                 = toset(var.source_network_interface_ids)
  description              = "${var.name}: ${each.value} to capd"
  network_interface_id     = each.value
  traffic_mirror_filter_id = aws_ec2_traffic_mirror_filter.capd.id
  traffic_mirror_target_id = aws_ec2_traffic_mirror_target.capd.id
  session_number           = var.session_number
  virtual_network_id       = var.virtual_network_id
  packet_length            = var.packet_length
  tags                     = merge(local.tags, { Name = "${var.name}-${each.value}" })
}

# The target must accept the VXLAN packets: UDP 4789 from the sources. Attached to the target ENI
# here; with an NLB, attach it to the capd instances behind it (output security_group_id).
resource "aws_security_group" "target" {
  name_prefix = "${var.name}-mirror-target-"
  description = "capd mirror target: VXLAN (UDP 4789) from mirror sources"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = "${var.name}-mirror-target" })

  ingress {
    description      = "Traffic Mirroring VXLAN from the sources"
    from_port        = 4789
    to_port          = 4789
    protocol         = "udp"
    cidr_blocks      = [for cidr in var.source_cidr_blocks : cidr if !strcontains(cidr, ":")]
    ipv6_cidr_blocks = [for cidr in var.source_cidr_blocks : cidr if strcontains(cidr, ":")]
  }

  egress {
    description      = "Replies, SSM, S3"
    from_port        = 0
    to_port          = 0
    protocol         = "-1"
    cidr_blocks      = ["0.0.0.0/0"]
    ipv6_cidr_blocks = ["::/0"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_network_interface_sg_attachment" "target" {
  count                = local.target_is_eni ? 1 : 0
  security_group_id    = aws_security_group.target.id
  network_interface_id = var.target_network_interface_id
}

# Instance profile for the capd instances: SSM (Run Command, Session Manager port forwarding).
resource "aws_iam_role" "capd" {
  count       = var.create_instance_profile ? 1 : 0
  name_prefix = "${var.name}-instance-"
  description = "capd instances: managed by SSM"
  tags        = local.tags
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Action    = "sts:AssumeRole"
      Principal = { Service = "ec2.amazonaws.com" }
    }]
  })
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  count      = var.create_instance_profile ? 1 : 0
  role       = aws_iam_role.capd[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_role_policy" "recordings" {
  count = var.create_instance_profile && var.recordings_bucket_arn != null ? 1 : 0
  name  = "${var.name}-bundles-and-recordings"
  role  = aws_iam_role.capd[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      { Effect = "Allow", Action = ["s3:GetObject"], Resource = ["${var.recordings_bucket_arn}/*"] },
      { Effect = "Allow", Action = ["s3:PutObject"], Resource = ["${var.recordings_bucket_arn}/recordings/*"] },
    ]
  })
}

resource "aws_iam_instance_profile" "capd" {
  count       = var.create_instance_profile ? 1 : 0
  name_prefix = "${var.name}-"
  role        = aws_iam_role.capd[0].name
  tags        = local.tags
}
