// The server's generation queue: one worker thread runs one job at a time through the Pipeline,
// so the HTTP threads stay free for progress, cancel and queries; a bounded queue refuses more
// work with 429. docs/serve.md.
#pragma once
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "uvit/error.hpp"
#include "uvit/pipeline.hpp"

namespace uvit::serve {

// An error with its HTTP status (4xx for the client's mistakes).
struct HttpError : Error {
  int status;
  std::string param;  // the offending field, when there is one
  HttpError(int s, const std::string& msg, std::string p = "")
      : Error(msg), status(s), param(std::move(p)) {}
};

enum class JobStatus { Queued, Generating, Completed, Failed, Cancelled };
const char* status_name(JobStatus s);

struct JobImage {
  std::vector<uint8_t> png;
  std::string parameters, record, prompt;
  uint64_t seed = 0, index = 0;
  int class_id = -1;
};

struct Job {
  std::string id;
  std::vector<GenerationRequest> parts;  // run in order (A1111: one per image, seed + i)
  std::vector<std::string> notes;        // what the server changed or ignored in the request
  // The fields below are guarded by the queue's mutex.
  JobStatus status = JobStatus::Queued;
  double created = 0, started = 0, completed = 0;  // unix seconds
  int part = 0, step = 0, steps = 0;
  bool cancel_requested = false;
  std::vector<JobImage> images;
  GenerateOptions resolved;  // of the last part run
  std::string error;
  // The failure as the A1111 and OpenAI routes answer it: 422 for a request the memory check
  // refused (the client can ask for less; the error says what), 503 for host memory that ran out
  // beyond the check (kHostMemoryError), 500 for anything else. docs/serve.md.
  int error_status = 500;
  // The running part's latest x0 of its first sample (Pipeline::preview_images turns it into the
  // preview on request; empty until the first evaluation or when the model has no preview).
  std::vector<float> preview;
  size_t stored_bytes = 0;  // its images and their metadata, set when it finishes
  bool finished() const { return status != JobStatus::Queued && status != JobStatus::Generating; }
};

// Progress of the running job for /sdapi/v1/progress (all zero when idle).
struct ProgressSnapshot {
  bool busy = false, interrupted = false;
  std::string job_id;
  int job_no = 0, job_count = 0, step = 0, steps = 0, queued = 0;
  double progress = 0, eta_s = 0, started = 0;
  std::vector<float> preview;  // Job::preview, copied when the caller asks for it
};

class JobQueue {
 public:
  // store_bytes: what the finished jobs kept for polling may hold (docs/serve.md, "Memory over
  // time"); the newest finished job is kept whatever its size.
  JobQueue(Pipeline& pipe, int max_queue, size_t store_bytes);
  ~JobQueue();  // cancels the running job and the queued ones, joins the worker

  // Queues a job; throws HttpError 429 when max_queue jobs already wait.
  std::shared_ptr<Job> submit(std::vector<GenerationRequest> parts, std::vector<std::string> notes);
  std::shared_ptr<Job> find(const std::string& id) const;  // nullptr when unknown or expired
  // Blocks until the job has finished.
  void wait(const std::shared_ptr<Job>& job);
  // Blocks until the state changes from `version` (or `timeout_s` passes); returns the version.
  uint64_t wait_change(uint64_t version, double timeout_s);
  uint64_t version() const;
  // Cancels a queued or running job; false when it has already finished.
  bool cancel(const std::shared_ptr<Job>& job);
  void interrupt();  // cancels the running job (A1111's /interrupt)
  ProgressSnapshot progress(bool with_preview = false) const;
  nlohmann::json job_json(const std::shared_ptr<Job>& job, bool with_images) const;
  int max_queue() const { return max_queue_; }

 private:
  void run();
  // Every finished job, cancelled while queued too, goes here: the store keeps the newest
  // kKeepFinished within store_bytes_, dropping the oldest first (docs/serve.md, "Memory over
  // time"). Called with mu_ held.
  void keep_finished(const std::shared_ptr<Job>& job);
  Pipeline& pipe_;
  const int max_queue_;
  const size_t store_bytes_;
  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  mutable std::condition_variable change_cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::shared_ptr<Job> current_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;  // by id; the newest finished ones kept
  std::deque<std::shared_ptr<Job>> finished_;         // oldest first
  size_t finished_bytes_ = 0;                         // their stored_bytes
  uint64_t next_id_ = 1, version_ = 0;
  bool stop_ = false;
  std::thread worker_;
};

// Job::preview (one sample's x0) as a base64 PNG (Pipeline::preview_images); "" when empty.
std::string preview_base64(const Pipeline& pipe, const std::vector<float>& x0);

// A std::bad_alloc in a job or a handler: host memory the memory check does not see ran out
// (docs/memory.md, "What is counted"); the server goes on.
inline constexpr const char* kHostMemoryError =
    "out of memory: the server could not allocate host memory for this request (memory that "
    "other processes hold, or that the memory check does not count); it goes on serving: try "
    "again later, or ask for less";

double unix_now();
// Set by SIGINT/SIGTERM: running jobs stop at their next network evaluation, queued ones are
// cancelled, new ones refused (503), so the HTTP threads waiting on them can finish and exit.
std::atomic<bool>& shutting_down();

}  // namespace uvit::serve
