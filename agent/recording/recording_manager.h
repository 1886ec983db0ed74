#pragma once
// Recordings: captures capd runs on its own (capd --record-dir DIR), each into a ring of pcapng
// files under DIR/NAME/, started, stopped, listed and fetched over gRPC by any client.
//
// How data flows: a recording's capture thread subscribes to a capture (CaptureHub, as a client
// stream does; recordings of the same packets share one), with
// the recording itself as its StreamSink: messages wait in a queue bounded in bytes (a full queue
// drops the batch and the loop counts it, so the disk never slows the capture); the recording's
// writer thread takes them off the queue through capfile/stream_to_file.h (the translation capctl
// uses) into a ring of pcapng files (capfile/rotating_writer.h), flushing once per batch and
// ticking once a second so time rotation happens on a quiet link too.
//
// State: DIR/NAME/request.txtpb (the StartRecordingRequest, protobuf text format) and
// DIR/NAME/recording.state (state, counters, gaps; rewritten atomically every few seconds). A
// recording whose state says running when capd starts is resumed: its ring continues (numbering
// after the last file), and the gap is noted in the list and as the section comment of the first
// new file. A stopped recording stays listed and fetchable, and its name taken, until Delete.
//
// Files on disk: DIR and each recording folder are capd's user's own, 0750, and every file in them
// 0640, whatever the umask. An existing DIR that belongs to another user or that its group or
// others may write is refused (Open fails); such a recording folder is left alone (logged). Nothing
// in DIR is written through a path: every file is created relative to its folder's descriptor with
// O_EXCL | O_NOFOLLOW after removing any entry of that name (temporaries renamed with renameat),
// and links are never followed, so a link planted there cannot redirect capd's writes.
//
// Counts and failures: a recording's packet count is what its files hold whole (the ring counts
// blocks once written; a resumed ring scans the files it adopts once, so a kill -9 loses no
// count; packets in files the ring deleted are kept in the state file, so a crash within the 2 s
// between such a deletion and the next state write loses that file's count). A
// write that fails (ENOSPC) cuts the file back to its last whole block, fails the recording with
// the writer's reason and writes the state file at once, into space reserved for it
// (recording.reserve, 64 KiB, held while the recording runs), so a failed recording does not
// resume at the next start. The state file is written with fsync before its rename.
//
// Free space: a recording never writes DIR's filesystem below its floor (--record-keep-free, by
// default the larger of 5 % of the filesystem and 1 GiB; capfile/free_space.h). A start whose
// ring (files x size) does not fit above the floor is refused. A ring kept past its files for
// capd-upload deletes its oldest files not uploaded yet, down to its normal size, when free space
// is below the floor (logged, counted in files_deleted_before_upload); below the floor anyway
// (something else filled the disk), the recording stops, state STOPPED, its message "stopped:
// free space on DIR below the floor of N bytes (M left)", its files kept and whole. A recording
// resumed at capd's start is not refused: the floor stops it if it must.
//
// Thread-safety: every public method may be called from any thread (gRPC callback threads).
// Start/Stop block for as long as a capture takes to open or to drain (milliseconds to a second):
// call them off gRPC's reaction threads.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agent/recording/recording_request.h"  // ValidateRecordingName, rotation bounds
#include "agent/stream/capture_hub.h"
#include "capfile/free_space.h"
#include "common/status.h"
#include "proto/capture.pb.h"

namespace capd::agent {

class Recording;

// Recordings running at once (capd --max-recordings). Each holds a capture ring (32 MiB by
// default, unless it shares another recording's capture), a queue of up to 64 MiB and two
// threads, for as long as it runs with nobody watching: a budget of its own, apart from
// --max-streams, so recordings never lock interactive streams out (nor the reverse).
inline constexpr size_t kDefaultMaxRecordings = 8;

class RecordingManager {
 public:
  // Creates DIR if needed (0750) and loads the recordings found there (without starting them).
  // kInvalidArgument when DIR cannot be used, naming why (see "Files on disk").
  // identity: with the listening port set (own-traffic exclusion). At most max_recordings run
  // at once: Start refuses more with kResourceExhausted.
  // keep_free: the free-space floor of DIR's filesystem (capd --record-keep-free; "Free space").
  static StatusOr<std::unique_ptr<RecordingManager>> Open(
      const std::string& dir, const AgentIdentity& identity,
      size_t max_recordings = kDefaultMaxRecordings,
      capfile::FreeSpaceFloor keep_free = capfile::kDefaultRecordKeepFree);
  ~RecordingManager();  // StopAll()

  // Starts every loaded recording whose state says running, up to max_recordings (the others
  // are marked failed, saying so); failures are logged and listed.
  void ResumeAll();

  // kInvalidArgument (name, request, rotation outside its bounds), kNotFound (interface),
  // kResourceExhausted (max_recordings running), or the capture's own failure; kAlreadyExists for a
  // name in use; kFailedPrecondition when the ring's full size (files x size) does not fit on
  // DIR's filesystem above the floor.
  StatusOr<v1::RecordingInfo> Start(const v1::StartRecordingRequest& request);
  // kNotFound for an unknown name. Stopping a stopped recording is not an error.
  StatusOr<v1::RecordingInfo> Stop(const std::string& name);
  // Removes a recording that does not run: every entry of its folder, then the folder, and its
  // name from the list (free for Start again). Returns its last Info. kNotFound for an unknown
  // name, kFailedPrecondition while it runs or starts. When an entry cannot be removed, the
  // recording stays listed (what is left of it) and the error names the entry.
  StatusOr<v1::RecordingInfo> Delete(const std::string& name);
  std::vector<v1::RecordingInfo> List();
  // Paths of the files a fetch may send, oldest first: the finished ones, and the current one
  // too once the recording is not running. kNotFound for an unknown name.
  StatusOr<std::vector<std::string>> FetchableFiles(const std::string& name);

  // A running recording as a stream rewinds into it (capctl stream --since, agent/rewind).
  struct RunningRecording {
    std::string name;
    std::string interface;  // as requested (empty: the default-route interface)
    std::string filter;
    bool decapsulates = false;
    // The ring's files now, oldest first, the one being written included.
    std::function<std::vector<std::string>()> files;
    // The time of the newest packet the writer has flushed to the files (0: none yet this run).
    std::function<uint64_t()> written_through_ns;
  };
  // The recordings running now. The functions hold the recording (any thread, for as long as
  // the caller keeps them; a stopped recording's files stay listed, its time stops moving).
  std::vector<RunningRecording> Running();

  // capd is stopping: every running recording ends its capture and files, keeping its state
  // "running" so it resumes at the next start. Blocks until their threads are gone.
  void StopAll();

 private:
  RecordingManager(std::string dir, int dir_fd, const AgentIdentity& identity,
                   size_t max_recordings, capfile::FreeSpaceFloor keep_free);
  std::shared_ptr<Recording> Find(const std::string& name);
  // Recordings running or starting, under mu_: what max_recordings bounds.
  size_t RunningLocked();

  const std::string dir_;
  const int dir_fd_;  // owned: DIR, open for the life of the manager
  const AgentIdentity identity_;
  // Recordings' captures; kept apart from the streams' (their own-traffic exclusion is set up
  // before the service's).
  const std::shared_ptr<CaptureHub> hub_ = std::make_shared<CaptureHub>();
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Recording>> recordings_;
  bool stopping_ = false;
  const size_t max_recordings_;
  const capfile::FreeSpaceFloor keep_free_;
  std::set<std::string> starting_;  // names whose Start is under way (guarded by mu_)
  std::set<std::string> deleting_;  // names whose Delete is under way (guarded by mu_)
};

}  // namespace capd::agent
