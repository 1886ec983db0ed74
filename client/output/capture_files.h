#pragma once
// capctl's code names the capture-file library's types (capfile/) unqualified, as its own: this
// header brings them into capd::client, so its commands include one header for them.

#include "capfile/capture_writer.h"
#include "capfile/rotating_writer.h"

namespace capd::client {

using capfile::ByteSink;
using capfile::CaptureWriter;
using capfile::FdSink;
using capfile::FileFormat;
using capfile::InterfaceCounters;
using capfile::InterfaceInfo;
using capfile::MakePcapngWriter;
using capfile::MakePcapWriter;

}  // namespace capd::client
