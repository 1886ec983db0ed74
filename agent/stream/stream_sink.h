#pragma once
// Where a capture loop sends its messages: in capd, one gRPC stream (service/stream_reactor.h).

#include <memory>

#include "proto/capture.pb.h"

namespace capd::agent {

class StreamSink {
 public:
  virtual ~StreamSink() = default;
  // Never blocks. A droppable message (a packet batch) is dropped when the sink's queue is full:
  // returns false and the caller counts its packets as agent drops. Control messages
  // (interfaces, statistics, the end) are always queued.
  virtual bool Send(std::unique_ptr<v1::StreamResponse> message, bool droppable) = 0;
  // A message to fill: recycled from earlier sends when one is free.
  virtual std::unique_ptr<v1::StreamResponse> NewMessage() = 0;
};

}  // namespace capd::agent
