// What capctl says about a stream's triggers, from the agent's Statistics.trigger.

#include "client/stream/trigger_text.h"

#include <gtest/gtest.h>

namespace capd::client {
namespace {

TEST(TriggerTextTest, WaitingMatchedAndNever) {
  v1::TriggerStatus s;
  s.set_waiting(true);
  s.set_held_packets(1234);
  s.set_held_bytes(1'200'000);
  s.set_history_limit_bytes(32'000'000);
  EXPECT_EQ(TriggerWaitingText(s),
            "waiting for --start-on: 1234 packets (1.20 MB) of history held, 0 dropped");
  EXPECT_EQ(TriggerSummaryText(s, true),
            "start-on never matched (1234 packets of history were held at the end)");
  s.set_dropped_packets(3000);
  s.set_dropped_bytes(4'500'000);
  s.set_waiting(false);
  s.set_start_matched_ns(1'796'657'197'278'619'300ULL);
  s.set_history_sent(77);
  EXPECT_EQ(TriggerSummaryText(s, true),
            "start-on matched at 2026-12-07T15:26:37.278619300Z; 77 packets of history sent; "
            "3000 packets (4.50 MB) of history were dropped by the agent's 32.00 MB bound");
  EXPECT_EQ(TriggerSummaryText(v1::TriggerStatus(), false), "");  // --stop-on alone
}

}  // namespace
}  // namespace capd::client
