// Request validation (agent/stream/stream_request.h, agent/recording/recording_request.h): text
// that is not UTF-8 is refused by name of its field before any other rule reads it; the other
// rules are unchanged. Regression inputs of tests/fuzz/request_fuzzer.cc belong here.

#include <gtest/gtest.h>

#include <string>

#include "agent/recording/recording_request.h"
#include "agent/stream/stream_request.h"

namespace capd::agent {
namespace {

const std::string kNotUtf8 = "eth\xff";
const std::string kOverlongSlash =
    "a\xc0\xaf"
    "b";  // '/' as an overlong two-byte form

void ExpectRefused(const Status& status, const std::string& text) {
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.message();
  EXPECT_NE(status.message().find(text), std::string::npos) << status.message();
}

TEST(StreamRequestValidationTest, TextThatIsNotUtf8IsRefusedByField) {
  v1::StreamRequest request;
  request.set_interface(kNotUtf8);
  ExpectRefused(ValidateStreamRequest(request), "interface is not UTF-8");

  request = {};
  request.set_filter("udp and \xed\xa0\x80");  // a surrogate
  ExpectRefused(ValidateStreamRequest(request), "filter is not UTF-8");

  request = {};
  request.mutable_decap()->set_mode(v1::Decapsulation::VXLAN);
  request.mutable_decap()->set_inner_filter("tcp\xf4\x90\x80\x80");  // above U+10FFFF
  ExpectRefused(ValidateStreamRequest(request), "decap.inner_filter is not UTF-8");
}

// UTF-8 comes first: a filter both too long and not UTF-8 is refused as not UTF-8, so no other
// message quotes or measures text that is not text.
TEST(StreamRequestValidationTest, Utf8IsCheckedBeforeTheOtherRules) {
  v1::StreamRequest request;
  std::string filter(kMaxFilterBytes + 1, ' ');
  filter[0] = '\x80';
  request.set_filter(filter);
  request.set_snaplen(0);
  ExpectRefused(ValidateStreamRequest(request), "filter is not UTF-8");
}

TEST(StreamRequestValidationTest, Utf8TextPassesToTheOtherRules) {
  v1::StreamRequest request;
  request.set_filter("udp port 53 \xc3\xa9");  // UTF-8: whether it compiles is decided later
  EXPECT_TRUE(ValidateStreamRequest(request).ok());
  request.set_interface("\xc3\xa9th0");  // UTF-8, but not an interface name
  ExpectRefused(ValidateStreamRequest(request), "interface name is not valid");
}

TEST(RecordingRequestValidationTest, NameThatIsNotUtf8IsRefused) {
  ExpectRefused(ValidateRecordingName(kNotUtf8), "name is not UTF-8");
  ExpectRefused(ValidateRecordingName(kOverlongSlash), "name is not UTF-8");
  ExpectRefused(ValidateRecordingName("\xc0\xae\xc0\xae"), "name is not UTF-8");  // overlong ".."
  v1::StartRecordingRequest request;
  request.set_name(kNotUtf8);
  ExpectRefused(ValidateStartRecordingRequest(request), "name is not UTF-8");
}

TEST(RecordingRequestValidationTest, StartChecksEveryTextField) {
  v1::StartRecordingRequest request;
  request.set_name("ok");
  EXPECT_TRUE(ValidateStartRecordingRequest(request).ok());
  request.set_interface(kNotUtf8);
  ExpectRefused(ValidateStartRecordingRequest(request), "interface is not UTF-8");
  request.set_interface("");
  request.set_filter(kNotUtf8);
  ExpectRefused(ValidateStartRecordingRequest(request), "filter is not UTF-8");
  request.set_filter("");
  request.mutable_decap()->set_inner_filter(kNotUtf8);
  ExpectRefused(ValidateStartRecordingRequest(request), "decap.inner_filter is not UTF-8");
}

TEST(RecordingRequestValidationTest, NamesStayInsideTheirFolder) {
  for (const std::string name : {std::string("a"), std::string("web-1"),
                                 std::string("2026.12.07_night"), std::string(64, 'x')}) {
    EXPECT_TRUE(ValidateRecordingName(name).ok()) << name;
  }
  for (const std::string name :
       {std::string(), std::string("."), std::string(".."), std::string(".hidden"),
        std::string("-rf"), std::string("a/b"), std::string("a\0b", 3),
        std::string("\xc3\xa9t\xc3\xa9"), std::string(65, 'x')}) {
    ExpectRefused(ValidateRecordingName(name), "is not valid");
  }
}

TEST(RecordingRequestValidationTest, RotationBounds) {
  v1::StartRecordingRequest request;
  request.set_name("r");
  request.mutable_rotation()->set_max_bytes(kMinRotationBytes - 1);
  ExpectRefused(ValidateStartRecordingRequest(request), "rotation size");
  request.mutable_rotation()->set_max_bytes(kMaxRotationBytes + 1);
  ExpectRefused(ValidateStartRecordingRequest(request), "rotation size");
  request.mutable_rotation()->set_max_bytes(kMinRotationBytes);
  request.mutable_rotation()->set_seconds(kMaxRotationSeconds + 1);
  ExpectRefused(ValidateStartRecordingRequest(request), "rotation seconds");
  request.mutable_rotation()->set_seconds(kMaxRotationSeconds);
  request.mutable_rotation()->set_max_files(kMaxRotationFiles + 1);
  ExpectRefused(ValidateStartRecordingRequest(request), "rotation file count");
  request.mutable_rotation()->set_max_files(kMaxRotationFiles);
  EXPECT_TRUE(ValidateStartRecordingRequest(request).ok());
}

// request_fuzzer finding: a StartRecordingRequest with fields capd does not know (here in the
// request and in its Decapsulation) was accepted, and its request.txtpb held them as numbers,
// which the text parser refuses: after a restart the recording was not resumed ("unreadable
// request.txtpb: left alone"). The text now leaves unknown fields out.
TEST(RecordingRequestValidationTest, RequestTextWithUnknownFieldsReadsBack) {
  const std::string wire(
      "\x0a\x05webIdempotent-1\x12\x04"
      "eth0\x1a\x03tcp\x22\x17\x08\x01\x10\xb5\x25\x20\x64\x20"
      "\xc8\x01\x2a\x0btcp port 800\x80\x01",
      56);
  v1::StartRecordingRequest request;
  ASSERT_TRUE(request.ParseFromString(wire));
  ASSERT_TRUE(ValidateStartRecordingRequest(request).ok());
  v1::StartRecordingRequest resumed;
  ASSERT_TRUE(ParseRecordingRequest(RecordingRequestText(request), &resumed))
      << RecordingRequestText(request);
  request.DiscardUnknownFields();
  EXPECT_EQ(resumed.SerializeAsString(), request.SerializeAsString());
  EXPECT_EQ(resumed.name(), "webId");
  EXPECT_EQ(resumed.decap().inner_filter(), "tcp port 80");
}

// StartRecordingRequest.upload: s3://BUCKET[/PREFIX] only, checked by capd itself (a client
// may not have checked it), and kept with the request so the recording resumes with it.
TEST(RecordingRequestValidationTest, UploadTakesS3BucketAndPrefixOnly) {
  v1::StartRecordingRequest request;
  request.set_name("night");
  request.set_interface("eth0");
  for (const std::string good : {"s3://caps", "s3://caps/fleet", "s3://my.bucket-1/a/b/c/"}) {
    request.set_upload(good);
    EXPECT_TRUE(ValidateStartRecordingRequest(request).ok()) << good;
  }
  request.set_upload("ftp://caps/x");
  ExpectRefused(ValidateStartRecordingRequest(request), "s3://BUCKET[/PREFIX]");
  for (const std::string bucket : {"s3://", "s3://ab", "s3://Caps", "s3://-caps", "s3://ca_ps/x"}) {
    request.set_upload(bucket);
    ExpectRefused(ValidateStartRecordingRequest(request), "is not an S3 bucket name");
  }
  request.set_upload("s3://caps/a b");
  ExpectRefused(ValidateStartRecordingRequest(request), "printable ASCII");
  request.set_upload("s3://caps/" + std::string(600, 'a'));
  ExpectRefused(ValidateStartRecordingRequest(request), "at most 512 bytes");
  request.set_upload("s3://caps/\xff");
  ExpectRefused(ValidateStartRecordingRequest(request), "upload is not UTF-8");
  request.set_upload("s3://caps/fleet");
  v1::StartRecordingRequest back;
  ASSERT_TRUE(ParseRecordingRequest(RecordingRequestText(request), &back));
  EXPECT_EQ(back.upload(), "s3://caps/fleet");
}

}  // namespace
}  // namespace capd::agent
