#include "agent/peers/relay_protocol.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <initializer_list>
#include <random>
#include <string>

#include "tests/unit/agent/endpoints.h"

namespace capd::agent {
namespace {

using peers_testing::Endpoint;
using peers_testing::V4;
using peers_testing::V6;

std::string Bytes(std::initializer_list<int> bytes) {
  std::string out;
  for (int b : bytes) out += static_cast<char>(b);
  return out;
}

// clang-format off
// 127.0.0.1:41234 asks about capd's port 50051, byte by byte as relay_protocol.h lays it out.
const std::string kQuery = Bytes({
    'C', 'P', 'Q', '1',                    // magic
    AF_INET, 127, 0, 0, 1,                 // family, address
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    // IPv4's unused bytes
    0xa1, 0x12,                            // port 41234
    0xc3, 0x83,                            // agent port 50051
});
constexpr size_t kQueryFamily = 4, kQueryPort = 21, kQueryAgentPort = 23;

// sshd[4242], uid 1000, one other connection 10.0.0.5:22 <-> 203.0.113.9:51234.
const std::string kAnswer = Bytes({
    'C', 'P', 'A', '1',                    // magic
    1,                                     // kFound
    0, 0, 0x03, 0xe8,                      // uid 1000
    0, 0, 0x10, 0x92,                      // pid 4242
    4,                                     // command length
    's', 's', 'h', 'd', 0, 0, 0, 0,        // command, 16 bytes
    0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 1,                            // total connections 1
    0, 0, 0, 7,                            // unreadable processes 7
    1,                                     // count
    AF_INET, 10, 0, 0, 5,                  // local 10.0.0.5:22
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 22,
    AF_INET, 203, 0, 113, 9,               // remote 203.0.113.9:51234
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0xc8, 0x22,
});
// clang-format on
constexpr size_t kAnswerOutcome = 4, kAnswerCommandLength = 13, kAnswerCommand = 14,
                 kAnswerTotal = 30, kAnswerCount = 38, kAnswerLocal = 39, kAnswerRemote = 58;

RelayAnswer SshdAnswer() {
  RelayAnswer answer;
  answer.outcome = RelayOutcome::kFound;
  answer.uid = 1000;
  answer.pid = 4242;
  answer.command = "sshd";
  answer.total_connections = 1;
  answer.unreadable_processes = 7;
  answer.connections = {{V4("10.0.0.5", 22), V4("203.0.113.9", 51234)}};
  return answer;
}

// An answer with `count` connections, IPv4 and IPv6 mixed.
RelayAnswer AnswerWith(size_t count) {
  RelayAnswer answer = SshdAnswer();
  answer.command = "sshd: alice@pts";
  answer.total_connections = static_cast<uint32_t>(count);
  answer.connections.clear();
  for (size_t i = 0; i < count; ++i) {
    const auto port = static_cast<uint16_t>(1000 + i);
    if (i % 2 == 0) {
      answer.connections.push_back({V4("10.0.0.5", port), V4("198.51.100.7", 443)});
    } else {
      answer.connections.push_back({V6("2001:db8::5", port), V6("2001:db8::ffff:1", 65535)});
    }
  }
  return answer;
}

void ExpectQueryRefused(const std::string& bytes, const std::string& why) {
  EXPECT_FALSE(DecodeQuery(bytes).has_value()) << why;
}
void ExpectAnswerRefused(const std::string& bytes, const std::string& why) {
  EXPECT_FALSE(DecodeAnswer(bytes).has_value()) << why;
}

std::string With(std::string bytes, size_t at, int value) {
  bytes.at(at) = static_cast<char>(value);
  return bytes;
}

TEST(RelayProtocolTest, QueryHasTheDocumentedLayout) {
  const RelayQuery query{V4("127.0.0.1", 41234), 50051};
  ASSERT_EQ(kQuery.size(), kQuerySize);
  EXPECT_EQ(EncodeQuery(query), kQuery);
  const auto decoded = DecodeQuery(kQuery);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, query);
}

TEST(RelayProtocolTest, QueriesRoundTrip) {
  for (const RelayQuery& query : {
           RelayQuery{V4("127.0.0.1", 1), 65535},
           RelayQuery{V4("255.255.255.255", 65535), 1},
           RelayQuery{V6("::1", 41234), 50051},
           RelayQuery{V6("2001:db8::1", 22), 50051},
           RelayQuery{V6("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 443), 8443},
           // The codec carries what it is given; normalizing is the socket table's business.
           RelayQuery{V6("::ffff:127.0.0.1", 5), 50051},
       }) {
    const std::string bytes = EncodeQuery(query);
    EXPECT_EQ(bytes.size(), kQuerySize);
    const auto decoded = DecodeQuery(bytes);
    ASSERT_TRUE(decoded.has_value()) << query.peer.ToString();
    EXPECT_EQ(*decoded, query) << query.peer.ToString();
  }
}

TEST(RelayProtocolTest, AnswerHasTheDocumentedLayout) {
  ASSERT_EQ(kAnswer.size(), 39u + 38u);
  EXPECT_EQ(EncodeAnswer(SshdAnswer()), kAnswer);
  const auto decoded = DecodeAnswer(kAnswer);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, SshdAnswer());
}

TEST(RelayProtocolTest, AnswersRoundTrip) {
  for (uint8_t outcome = 1; outcome <= 6; ++outcome) {
    RelayAnswer answer;
    answer.outcome = static_cast<RelayOutcome>(outcome);
    const std::string bytes = EncodeAnswer(answer);
    EXPECT_EQ(bytes.size(), 39u);
    const auto decoded = DecodeAnswer(bytes);
    ASSERT_TRUE(decoded.has_value()) << int{outcome};
    EXPECT_EQ(*decoded, answer) << int{outcome};
  }
  for (size_t count = 0; count <= kMaxRelayConnections; ++count) {
    RelayAnswer answer = AnswerWith(count);
    answer.total_connections += 1000;  // more than listed is fine, up to the maximum
    const std::string bytes = EncodeAnswer(answer);
    EXPECT_EQ(bytes.size(), 39 + 38 * count);
    const auto decoded = DecodeAnswer(bytes);
    ASSERT_TRUE(decoded.has_value()) << count;
    EXPECT_EQ(*decoded, answer) << count;
  }
  RelayAnswer extremes = AnswerWith(kMaxRelayConnections);
  extremes.uid = 0xffffffff;
  extremes.pid = 0x7fffffff;
  extremes.total_connections = 0xffffffff;
  extremes.unreadable_processes = 0xffffffff;
  extremes.command = std::string("\0\x1b[2J\xff\\sixteen-bytes", 16);  // any byte, exactly 16
  const auto decoded = DecodeAnswer(EncodeAnswer(extremes));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(*decoded, extremes);
  EXPECT_EQ(EncodeAnswer(extremes).size(), kMaxAnswerSize);
}

TEST(RelayProtocolTest, ReadyRoundTripsAndRefusesUnknownBits) {
  for (uint8_t bits = 0; bits <= (kHelperHasPtrace | kHelperHasDacReadSearch); ++bits) {
    const std::string bytes = EncodeReady(bits);
    EXPECT_EQ(bytes, std::string("CPR1") + static_cast<char>(bits));
    const auto decoded = DecodeReady(bytes);
    ASSERT_TRUE(decoded.has_value()) << int{bits};
    EXPECT_EQ(*decoded, bits);
  }
  EXPECT_FALSE(DecodeReady(EncodeReady(4)).has_value());
  EXPECT_FALSE(DecodeReady(EncodeReady(0x80)).has_value());
  EXPECT_FALSE(DecodeReady(EncodeReady(0xff)).has_value());
  EXPECT_FALSE(DecodeReady("CPR1").has_value());
  EXPECT_FALSE(DecodeReady(EncodeReady(3) + '\0').has_value());
  EXPECT_FALSE(DecodeReady(std::string("CPQ1\x03")).has_value());
  EXPECT_FALSE(DecodeReady("").has_value());
}

TEST(RelayProtocolTest, MalformedQueriesAreRefused) {
  ASSERT_TRUE(DecodeQuery(kQuery).has_value());
  ExpectQueryRefused("", "empty");
  ExpectQueryRefused(kQuery.substr(0, kQuerySize - 1), "one byte short");
  ExpectQueryRefused(kQuery + '\0', "one byte long");
  ExpectQueryRefused(kQuery + kQuery, "two queries");
  for (size_t i = 0; i < 4; ++i) {
    ExpectQueryRefused(With(kQuery, i, kQuery[i] ^ 0x20), "magic byte " + std::to_string(i));
  }
  ExpectQueryRefused("CPA1" + kQuery.substr(4), "an answer's magic");
  for (int family : {0, AF_UNIX, AF_INET + 1, AF_INET6 + 1, 255}) {
    ExpectQueryRefused(With(kQuery, kQueryFamily, family), "family " + std::to_string(family));
  }
  for (size_t i = kQueryFamily + 5; i < kQueryPort; ++i) {
    ExpectQueryRefused(With(kQuery, i, 1), "IPv4 with unused byte " + std::to_string(i) + " set");
  }
  ExpectQueryRefused(With(With(kQuery, kQueryPort, 0), kQueryPort + 1, 0), "port 0");
  ExpectQueryRefused(With(With(kQuery, kQueryAgentPort, 0), kQueryAgentPort + 1, 0),
                     "agent port 0");
  // The same bytes as IPv6 are a valid (if odd) address: the family decides.
  EXPECT_TRUE(DecodeQuery(With(With(kQuery, kQueryFamily, AF_INET6), 20, 1)).has_value());
}

TEST(RelayProtocolTest, MalformedAnswersAreRefused) {
  ASSERT_TRUE(DecodeAnswer(kAnswer).has_value());
  const std::string none = EncodeAnswer(RelayAnswer{});  // kFailed, no connections, 39 bytes
  ASSERT_TRUE(DecodeAnswer(none).has_value());
  ExpectAnswerRefused("", "empty");
  ExpectAnswerRefused(none.substr(0, 38), "header one byte short");
  ExpectAnswerRefused(none + '\0', "header one byte long");
  ExpectAnswerRefused(kAnswer.substr(0, kAnswer.size() - 1), "one byte short");
  ExpectAnswerRefused(kAnswer + '\0', "one byte long");
  for (size_t i = 0; i < 4; ++i) {
    ExpectAnswerRefused(With(kAnswer, i, kAnswer[i] ^ 0x20), "magic byte " + std::to_string(i));
  }
  ExpectAnswerRefused("CPQ1" + kAnswer.substr(4), "a query's magic");
  for (int outcome : {0, 7, 0x80, 0xff}) {
    ExpectAnswerRefused(With(kAnswer, kAnswerOutcome, outcome),
                        "outcome " + std::to_string(outcome));
  }
  for (int length : {17, 0x80, 0xff}) {
    ExpectAnswerRefused(With(kAnswer, kAnswerCommandLength, length),
                        "command length " + std::to_string(length));
  }
  // Five connections, total five, and the bytes for all five: still one too many.
  RelayAnswer five = AnswerWith(kMaxRelayConnections);
  five.total_connections = 5;
  std::string bytes = EncodeAnswer(five);
  bytes.at(kAnswerCount) = 5;
  bytes += bytes.substr(kAnswerLocal, 38);
  ExpectAnswerRefused(bytes, "count 5");
  ExpectAnswerRefused(With(kAnswer, kAnswerTotal + 3, 0), "count 1 > total 0");
  ExpectAnswerRefused(With(kAnswer, kAnswerCount, 0), "count 0 with a connection's bytes");
  ExpectAnswerRefused(With(With(kAnswer, kAnswerTotal + 3, 2), kAnswerCount, 2),
                      "count 2 with one connection's bytes");
  for (size_t endpoint : {kAnswerLocal, kAnswerRemote}) {
    const std::string which = endpoint == kAnswerLocal ? "local " : "remote ";
    for (int family : {0, AF_UNIX, 255}) {
      ExpectAnswerRefused(With(kAnswer, endpoint, family),
                          which + "family " + std::to_string(family));
    }
    ExpectAnswerRefused(With(kAnswer, endpoint + 10, 1), which + "IPv4 with an unused byte set");
    ExpectAnswerRefused(With(With(kAnswer, endpoint + 17, 0), endpoint + 18, 0), which + "port 0");
  }
}

TEST(RelayProtocolTest, CommandPaddingMustBeZero) {
  // A command's unused bytes carry nothing: non-zero ones are not a well-formed answer (and would
  // not survive a re-encoding).
  for (size_t i = kAnswerCommand + 4; i < kAnswerCommand + 16; ++i) {
    ExpectAnswerRefused(With(kAnswer, i, 'x'), "command padding byte " + std::to_string(i));
  }
}

TEST(RelayProtocolTest, LongCommandAndExtraConnectionsAreCut) {
  RelayAnswer answer = AnswerWith(6);
  answer.command = "a-process-name-longer-than-sixteen";
  const auto decoded = DecodeAnswer(EncodeAnswer(answer));
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->command, "a-process-name-l");
  EXPECT_EQ(decoded->total_connections, 6u);
  ASSERT_EQ(decoded->connections.size(), kMaxRelayConnections);
  for (size_t i = 0; i < kMaxRelayConnections; ++i) {
    EXPECT_EQ(decoded->connections[i], answer.connections[i]) << i;
  }
}

bool AllVisible(const std::string& text) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f) return false;
  }
  return true;
}

TEST(RelayProtocolTest, EscapeProcessNameLeavesNoControlCharacter) {
  // A name that would return the cursor, erase the line and hide what follows on a terminal.
  const std::string hostile = "\r\x1b[2K\x1b[8m";
  EXPECT_EQ(EscapeProcessName(hostile), "\\x0d\\x1b[2K\\x1b[8m");
  EXPECT_EQ(EscapeProcessName("\x7f\x80\xff\t\n"), "\\x7f\\x80\\xff\\x09\\x0a");
  EXPECT_EQ(EscapeProcessName(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(EscapeProcessName("a\\b"), "a\\\\b");
  // A name that looks like an escape stays distinguishable from the byte it spells.
  EXPECT_NE(EscapeProcessName("\\x1b"), EscapeProcessName("\x1b"));
  EXPECT_EQ(EscapeProcessName("sshd: alice@pts/0"), "sshd: alice@pts/0");
  EXPECT_EQ(EscapeProcessName(""), "");
  std::string every_byte;
  for (int b = 0; b < 256; ++b) every_byte += static_cast<char>(b);
  EXPECT_TRUE(AllVisible(EscapeProcessName(every_byte)));
  EXPECT_TRUE(AllVisible(EscapeProcessName(hostile)));
}

// What the fuzzer (tests/fuzz/relay_protocol_fuzzer.cc) checks: decoding never fails badly, and
// whatever is accepted is exactly what encoding its value gives.
struct Accepted {
  size_t queries = 0, answers = 0, readies = 0;
};
void CheckRoundTrip(const std::string& bytes, Accepted& accepted) {
  if (const auto query = DecodeQuery(bytes)) {
    ++accepted.queries;
    ASSERT_EQ(EncodeQuery(*query), bytes);
  }
  if (const auto answer = DecodeAnswer(bytes)) {
    ++accepted.answers;
    ASSERT_EQ(EncodeAnswer(*answer), bytes);
  }
  if (const auto ready = DecodeReady(bytes)) {
    ++accepted.readies;
    ASSERT_EQ(EncodeReady(*ready), bytes);
  }
}

// Every single-byte change of `valid`, checked; how many of them were accepted.
Accepted MutationsOf(const std::string& valid) {
  Accepted accepted;
  for (size_t i = 0; i < valid.size(); ++i) {
    for (int value = 0; value < 256; ++value) {
      CheckRoundTrip(With(valid, i, value), accepted);
      if (testing::Test::HasFatalFailure()) {
        ADD_FAILURE() << "byte " << i << " set to " << value << " in a " << valid.size()
                      << "-byte message";
        return accepted;
      }
    }
  }
  return accepted;
}

TEST(RelayProtocolTest, EverySingleByteMutationRoundTripsOrIsRefused) {
  // Exactly the changes the layout allows are accepted: a magic byte, IPv4's unused bytes and a
  // command's padding keep only their own value (1 each), a family AF_INET or AF_INET6 (2; 1 for
  // an IPv6 address with a byte past the fourth set), an outcome 1 to 6, a count only its own;
  // addresses, uid, pid, command bytes and the unreadable count take any value (256), a port or
  // the total any that keeps it non-zero (or at least the count).
  const Accepted query = MutationsOf(kQuery);
  EXPECT_EQ(query.queries, 4 + 2 + 4 * 256 + 12 + 2 * 256 + 2 * 256);
  EXPECT_EQ(query.answers + query.readies, 0u);

  // kAnswer: "sshd" may be 4 to 16 bytes long, its total (1) any but 0.
  const Accepted sshd = MutationsOf(kAnswer);
  const size_t v4_endpoint = 2 + 4 * 256 + 12;  // and the port's
  EXPECT_EQ(sshd.answers, 4 + 6 + 4 * 256 + 4 * 256 + 13 + 4 * 256 + 12 + (3 * 256 + 255) +
                              4 * 256 + 1 + (v4_endpoint + 256 + 255) + (v4_endpoint + 2 * 256));

  // Four connections, two IPv4 and two IPv6: a 15-byte command 15 or 16 long, its total (4) at
  // least 4.
  const Accepted four = MutationsOf(EncodeAnswer(AnswerWith(kMaxRelayConnections)));
  const size_t v6_endpoint = 1 + 16 * 256;
  EXPECT_EQ(four.answers, 4 + 6 + 4 * 256 + 4 * 256 + 2 + 15 * 256 + 1 + (3 * 256 + 252) + 4 * 256 +
                              1 + 4 * (v4_endpoint + 2 * 256) + 4 * (v6_endpoint + 2 * 256));

  // The ready message: its own bytes at each position, and bits 0 to 3.
  const Accepted ready = MutationsOf(EncodeReady(3));
  EXPECT_EQ(ready.readies, 4 + 4u);
}

TEST(RelayProtocolTest, RandomBytesRoundTripOrAreRefused) {
  std::mt19937 rng(20261206);  // fixed: a failure is reproducible
  std::uniform_int_distribution<int> byte(0, 255), length(0, 250), choice(0, 7);
  const std::string answer = EncodeAnswer(AnswerWith(2));
  Accepted accepted;
  for (int round = 0; round < 200'000; ++round) {
    std::string bytes;
    switch (choice(rng)) {
      case 0:  // a valid message with a few bytes changed
        bytes = round % 2 ? kQuery : answer;
        for (int i = 0; i < 3; ++i) bytes[rng() % bytes.size()] = static_cast<char>(byte(rng));
        break;
      case 1:  // a known magic, then anything of a length that may fit
      case 2:
        bytes = round % 3 == 0 ? "CPQ1" : round % 3 == 1 ? "CPA1" : "CPR1";
        [[fallthrough]];
      default:
        for (int n = length(rng); n > 0; --n) bytes += static_cast<char>(byte(rng));
    }
    CheckRoundTrip(bytes, accepted);
    if (HasFatalFailure()) FAIL() << "round " << round;
  }
  EXPECT_GT(accepted.queries + accepted.answers, 1000u);
}

}  // namespace
}  // namespace capd::agent
