#include "agent/peers/carrier_registry.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tests/unit/agent/endpoints.h"

namespace capd::agent {
namespace {

using peers_testing::Endpoint;
using peers_testing::V4;
using peers_testing::V6;

// sshd's connection to a laptop, and a second one through another relay.
CarrierConnection Ssh() { return {V4("10.0.0.5", 22), V4("203.0.113.9", 51234), 4242, "sshd"}; }
CarrierConnection Ssm() {
  return {V6("2001:db8::5", 40000), V6("2001:db8::443", 443), 777, "ssm-session-wor"};
}
constexpr char kSshExpression[] =
    "(host 10.0.0.5 and host 203.0.113.9 and tcp port 22 and tcp port 51234)";
constexpr char kSsmExpression[] =
    "(host 2001:db8::5 and host 2001:db8::443 and tcp port 40000 and tcp port 443)";

bool HasControlCharacter(const std::string& text) {
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte >= 0x7f) return true;
  }
  return false;
}

TEST(CarrierRegistryTest, StartsEmpty) {
  auto registry = std::make_shared<CarrierRegistry>();
  const auto snapshot = registry->Snapshot();
  EXPECT_EQ(registry->generation(), 0u);
  EXPECT_EQ(snapshot->generation, 0u);
  EXPECT_TRUE(snapshot->connections.empty());
  EXPECT_EQ(snapshot->expression, "");
}

TEST(CarrierRegistryTest, RegistrationKeepsItsConnectionsUntilDestroyed) {
  auto registry = std::make_shared<CarrierRegistry>();
  {
    const auto registration = registry->Add({Ssh()});
    EXPECT_EQ(registry->generation(), 1u);
    const auto snapshot = registry->Snapshot();
    EXPECT_EQ(snapshot->generation, 1u);
    ASSERT_EQ(snapshot->connections.size(), 1u);
    EXPECT_EQ(snapshot->connections[0].local, Ssh().local);
    EXPECT_EQ(snapshot->connections[0].remote, Ssh().remote);
    EXPECT_EQ(snapshot->connections[0].pid, 4242);
    EXPECT_EQ(snapshot->expression, kSshExpression);
  }
  EXPECT_EQ(registry->generation(), 2u);
  EXPECT_TRUE(registry->Snapshot()->connections.empty());
  EXPECT_EQ(registry->Snapshot()->expression, "");
}

TEST(CarrierRegistryTest, ASnapshotDoesNotChangeUnderItsReader) {
  auto registry = std::make_shared<CarrierRegistry>();
  const auto before = registry->Snapshot();
  auto registration = registry->Add({Ssh()});
  const auto during = registry->Snapshot();
  registration = CarrierRegistry::Registration();
  EXPECT_TRUE(before->connections.empty());
  EXPECT_EQ(during->connections.size(), 1u);
  EXPECT_EQ(during->expression, kSshExpression);
  EXPECT_TRUE(registry->Snapshot()->connections.empty());
}

TEST(CarrierRegistryTest, NoConnectionsChangeNothing) {
  auto registry = std::make_shared<CarrierRegistry>();
  {
    const auto registration = registry->Add({});
    EXPECT_EQ(registry->generation(), 0u);
  }
  EXPECT_EQ(registry->generation(), 0u);
}

TEST(CarrierRegistryTest, MovingARegistrationKeepsItsConnections) {
  auto registry = std::make_shared<CarrierRegistry>();
  CarrierRegistry::Registration moved;
  {
    auto registration = registry->Add({Ssh()});
    moved = std::move(registration);
  }  // the moved-from registration is gone: nothing removed
  EXPECT_EQ(registry->generation(), 1u);
  EXPECT_EQ(registry->Snapshot()->connections.size(), 1u);

  CarrierRegistry::Registration constructed(std::move(moved));
  moved = CarrierRegistry::Registration();  // releasing the moved-from one: nothing removed
  EXPECT_EQ(registry->Snapshot()->connections.size(), 1u);

  constructed = CarrierRegistry::Registration();  // assigning over it releases it
  EXPECT_EQ(registry->generation(), 2u);
  EXPECT_TRUE(registry->Snapshot()->connections.empty());
}

TEST(CarrierRegistryTest, MoveAssigningReleasesTheOldRegistration) {
  auto registry = std::make_shared<CarrierRegistry>();
  auto ssh = registry->Add({Ssh()});
  auto ssm = registry->Add({Ssm()});
  ASSERT_EQ(registry->Snapshot()->connections.size(), 2u);
  ssh = std::move(ssm);
  const auto snapshot = registry->Snapshot();
  ASSERT_EQ(snapshot->connections.size(), 1u);
  EXPECT_EQ(snapshot->connections[0].pid, 777);
  EXPECT_EQ(snapshot->expression, kSsmExpression);
}

TEST(CarrierRegistryTest, ARegistrationMayOutliveItsOwnersPointer) {
  auto registry = std::make_shared<CarrierRegistry>();
  std::weak_ptr<CarrierRegistry> weak = registry;
  auto registration = registry->Add({Ssh()});
  registry.reset();  // the registration keeps the registry alive
  ASSERT_FALSE(weak.expired());
  EXPECT_EQ(weak.lock()->Snapshot()->connections.size(), 1u);
  registration = CarrierRegistry::Registration();
  EXPECT_TRUE(weak.expired());
}

TEST(CarrierRegistryTest, GenerationChangesOnlyWhenTheSetChanges) {
  auto registry = std::make_shared<CarrierRegistry>();
  auto first = registry->Add({Ssh()});
  EXPECT_EQ(registry->generation(), 1u);
  // A second stream through the same SSH connection: the same set.
  auto second = registry->Add({Ssh()});
  EXPECT_EQ(registry->generation(), 1u);
  EXPECT_EQ(registry->Snapshot()->connections.size(), 1u);
  // One of the two ends: the other still holds the connection.
  first = CarrierRegistry::Registration();
  EXPECT_EQ(registry->generation(), 1u);
  ASSERT_EQ(registry->Snapshot()->connections.size(), 1u);
  EXPECT_EQ(registry->Snapshot()->expression, kSshExpression);
  second = CarrierRegistry::Registration();
  EXPECT_EQ(registry->generation(), 2u);
  EXPECT_TRUE(registry->Snapshot()->connections.empty());
}

TEST(CarrierRegistryTest, ExpressionJoinsEveryConnection) {
  auto registry = std::make_shared<CarrierRegistry>();
  auto ssm = registry->Add({Ssm()});
  auto both = registry->Add({Ssh(), Ssm()});
  const auto snapshot = registry->Snapshot();
  EXPECT_EQ(snapshot->generation, 2u);
  ASSERT_EQ(snapshot->connections.size(), 2u);
  // In a stable order (IPv4 before IPv6 by family), each connection once.
  EXPECT_EQ(snapshot->expression, std::string(kSshExpression) + " or " + kSsmExpression);
}

TEST(CarrierRegistryTest, DescribeEscapesControlCharacters) {
  EXPECT_EQ(Ssh().Describe(), "sshd[4242] 10.0.0.5:22 <-> 203.0.113.9:51234");
  EXPECT_EQ(Ssm().Describe(), "ssm-session-wor[777] [2001:db8::5]:40000 <-> [2001:db8::443]:443");
  CarrierConnection hostile = Ssh();
  hostile.command = "\r\x1b[2Kok\x1b[8m\\";
  const std::string text = hostile.Describe();
  EXPECT_EQ(text, "\\x0d\\x1b[2Kok\\x1b[8m\\\\[4242] 10.0.0.5:22 <-> 203.0.113.9:51234");
  EXPECT_FALSE(HasControlCharacter(text));
}

// JudgeRelay, outcome by outcome.

RelayAnswer Found(uint32_t total) {
  RelayAnswer answer;
  answer.outcome = RelayOutcome::kFound;
  answer.uid = 1000;
  answer.pid = 4242;
  answer.command = "sshd";
  answer.total_connections = total;
  for (uint32_t i = 0; i < total && i < kMaxRelayConnections; ++i) {
    answer.connections.push_back(
        {V4("10.0.0.5", 22), V4("203.0.113.9", static_cast<uint16_t>(51234 + i))});
  }
  return answer;
}

RelayAnswer Only(RelayOutcome outcome) {
  RelayAnswer answer;
  answer.outcome = outcome;
  return answer;
}

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// What every warning shares: it says the relay's traffic is not left out, and is logged as is.
void ExpectNotExcludedWarning(const RelayVerdict& verdict) {
  EXPECT_TRUE(verdict.exclude.empty());
  EXPECT_TRUE(Contains(verdict.warning, "NOT left out of captures")) << verdict.warning;
  EXPECT_EQ(verdict.log, verdict.warning);
  EXPECT_FALSE(HasControlCharacter(verdict.warning)) << verdict.warning;
}

TEST(JudgeRelayTest, HelperErrorIsAWarningWithItsMessage) {
  const RelayVerdict verdict =
      JudgeRelay(Unavailable("the peer helper did not answer within 2000 ms"));
  ExpectNotExcludedWarning(verdict);
  EXPECT_TRUE(Contains(verdict.warning, "did not answer within 2000 ms")) << verdict.warning;
}

TEST(JudgeRelayTest, ClientOnAnotherHostNeedsNothing) {
  const RelayVerdict verdict = JudgeRelay(Only(RelayOutcome::kNotLocal));
  EXPECT_TRUE(verdict.exclude.empty());
  EXPECT_EQ(verdict.warning, "");
  EXPECT_EQ(verdict.log, "");
}

TEST(JudgeRelayTest, LocalClientWithoutOtherConnectionsNeedsNothing) {
  const RelayVerdict verdict = JudgeRelay(Found(0));
  EXPECT_TRUE(verdict.exclude.empty());
  EXPECT_EQ(verdict.warning, "");
  EXPECT_EQ(verdict.log, "");
}

TEST(JudgeRelayTest, UpToFourConnectionsAreExcluded) {
  for (uint32_t total = 1; total <= kMaxRelayConnections; ++total) {
    const RelayAnswer answer = Found(total);
    const RelayVerdict verdict = JudgeRelay(answer);
    EXPECT_EQ(verdict.warning, "") << total;
    ASSERT_EQ(verdict.exclude.size(), total);
    for (uint32_t i = 0; i < total; ++i) {
      EXPECT_EQ(verdict.exclude[i].local, answer.connections[i].local);
      EXPECT_EQ(verdict.exclude[i].remote, answer.connections[i].remote);
      EXPECT_EQ(verdict.exclude[i].pid, 4242);
      EXPECT_EQ(verdict.exclude[i].command, "sshd");
    }
    EXPECT_TRUE(Contains(verdict.log, "sshd[4242] (uid 1000)")) << verdict.log;
    EXPECT_TRUE(Contains(verdict.log, std::to_string(total) + " connection(s)")) << verdict.log;
  }
}

TEST(JudgeRelayTest, MoreThanFourConnectionsAreAWarningAndNoneIsTrusted) {
  for (uint32_t total : {5u, 6u, 1000u}) {
    const RelayVerdict verdict = JudgeRelay(Found(total));
    ExpectNotExcludedWarning(verdict);
    EXPECT_TRUE(Contains(verdict.warning, "sshd[4242]")) << verdict.warning;
    EXPECT_TRUE(Contains(verdict.warning, std::to_string(total) + " other TCP connections"))
        << verdict.warning;
  }
}

TEST(JudgeRelayTest, ProcessNameIsEscapedInLogAndWarning) {
  RelayAnswer answer = Found(1);
  answer.command = "\r\x1b[2Khidden";
  const RelayVerdict excluded = JudgeRelay(answer);
  EXPECT_TRUE(Contains(excluded.log, "\\x0d\\x1b[2Khidden[4242]")) << excluded.log;
  EXPECT_FALSE(HasControlCharacter(excluded.log));
  EXPECT_EQ(excluded.exclude.at(0).command, answer.command);  // raw; Describe escapes it

  answer = Found(5);
  answer.command = "\r\x1b[2Khidden";
  const RelayVerdict warned = JudgeRelay(answer);
  ExpectNotExcludedWarning(warned);
  EXPECT_TRUE(Contains(warned.warning, "\\x0d\\x1b[2Khidden[4242]")) << warned.warning;
}

TEST(JudgeRelayTest, UnknownOwnerWarningNamesTheUid) {
  RelayAnswer answer = Only(RelayOutcome::kOwnerUnknown);
  answer.uid = 1234;
  answer.unreadable_processes = 17;
  const RelayVerdict verdict = JudgeRelay(answer);
  ExpectNotExcludedWarning(verdict);
  EXPECT_TRUE(Contains(verdict.warning, "uid 1234")) << verdict.warning;
  EXPECT_TRUE(Contains(verdict.warning, "17 processes")) << verdict.warning;
}

TEST(JudgeRelayTest, RefusalsAndFailuresAreWarnings) {
  const std::pair<RelayOutcome, const char*> cases[] = {
      {RelayOutcome::kNotAgentConnection, "no such connection to capd"},
      {RelayOutcome::kMalformed, "malformed query"},
      {RelayOutcome::kFailed, "could not read the socket table"},
  };
  for (const auto& [outcome, says] : cases) {
    const RelayVerdict verdict = JudgeRelay(Only(outcome));
    ExpectNotExcludedWarning(verdict);
    EXPECT_TRUE(Contains(verdict.warning, says)) << verdict.warning;
  }
}

}  // namespace
}  // namespace capd::agent
