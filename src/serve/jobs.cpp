#include "serve/jobs.hpp"

#include <chrono>
#include <new>

#include "serve/base64.hpp"
#include "uvit/log.hpp"
#include "uvit/threads.hpp"

namespace uvit::serve {

namespace {
constexpr size_t kKeepFinished = 64;  // finished jobs kept for polling (sd.cpp keeps its too)

// What the client or the operator can change when the memory check refused part `r`. A1111
// requests are one part per image (n 1), so there fewer images cannot help: turning guidance off
// halves the network's batch, or the server needs more memory.
std::string memory_hint(const Pipeline& pipe, const GenerationRequest& r) {
  if (r.n > 1)
    return "; ask for fewer images, or start the server with a smaller network batch (--set "
           "sample.mini_batch_size=N)";
  bool guided = true;
  try {  // (checked before the job ran; a throw here would escape the worker thread)
    guided = resolve_generation(pipe.config(), r).cfg_scale != 0;
  } catch (const std::exception&) {
  }
  return std::string(
             "; one image alone does not fit (A1111 requests make their images one at a "
             "time, whatever batch_size and n_iter)") +
         (guided ? ": with guidance off (w 1: A1111's cfg_scale, OpenAI's guidance_scale, "
                   "guidance_w) the network runs on one sample instead of two; else the server "
                   "needs more memory"
                 : ": the server needs more memory");
}
}  // namespace

std::string preview_base64(const Pipeline& pipe, const std::vector<float>& x0) {
  if (x0.empty()) return "";
  const Image im = pipe.preview_images(x0.data(), 1)[0];
  const std::vector<uint8_t> png = encode_png(im.px.data(), im.w, im.h, im.c);
  return base64_encode(png.data(), png.size());
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::atomic<bool>& shutting_down() {
  static std::atomic<bool> flag{false};
  return flag;
}

const char* status_name(JobStatus s) {
  switch (s) {
    case JobStatus::Queued:
      return "queued";
    case JobStatus::Generating:
      return "generating";
    case JobStatus::Completed:
      return "completed";
    case JobStatus::Failed:
      return "failed";
    case JobStatus::Cancelled:
      return "cancelled";
  }
  return "unknown";
}

JobQueue::JobQueue(Pipeline& pipe, int max_queue, size_t store_bytes)
    : pipe_(pipe), max_queue_(max_queue), store_bytes_(store_bytes), worker_([this] { run(); }) {}

JobQueue::~JobQueue() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
    if (current_) current_->cancel_requested = true;
    for (auto& j : queue_) {
      j->status = JobStatus::Cancelled;
      j->error = "server shutting down";
    }
    queue_.clear();
  }
  pipe_.cancel();
  work_cv_.notify_all();
  change_cv_.notify_all();
  worker_.join();
}

std::shared_ptr<Job> JobQueue::submit(std::vector<GenerationRequest> parts,
                                      std::vector<std::string> notes) {
  auto job = std::make_shared<Job>();
  job->parts = std::move(parts);
  job->notes = std::move(notes);
  job->created = unix_now();
  {
    std::lock_guard<std::mutex> l(mu_);
    if (shutting_down()) throw HttpError(503, "the server is shutting down");
    if (int(queue_.size()) >= max_queue_)
      throw HttpError(429, cat("the queue is full (", max_queue_,
                               " jobs waiting); retry when /sdapi/v1/progress shows it idle"));
    job->id = cat("job-", next_id_++);
    jobs_[job->id] = job;
    queue_.push_back(job);
    ++version_;
  }
  work_cv_.notify_one();
  change_cv_.notify_all();
  return job;
}

std::shared_ptr<Job> JobQueue::find(const std::string& id) const {
  std::lock_guard<std::mutex> l(mu_);
  const auto it = jobs_.find(id);
  return it == jobs_.end() ? nullptr : it->second;
}

void JobQueue::wait(const std::shared_ptr<Job>& job) {
  std::unique_lock<std::mutex> l(mu_);
  change_cv_.wait(l, [&] { return job->finished(); });
}

uint64_t JobQueue::wait_change(uint64_t version, double timeout_s) {
  std::unique_lock<std::mutex> l(mu_);
  change_cv_.wait_for(l, std::chrono::duration<double>(timeout_s),
                      [&] { return version_ != version || stop_; });
  return version_;
}

uint64_t JobQueue::version() const {
  std::lock_guard<std::mutex> l(mu_);
  return version_;
}

// A running job stops at its next progress report, which reads cancel_requested under mu_. Not
// pipe_.cancel(): called after the lock, it could land on the next job if this one ended between.
bool JobQueue::cancel(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (job->finished()) return false;
    job->cancel_requested = true;
    if (job->status == JobStatus::Queued) {
      for (auto it = queue_.begin(); it != queue_.end(); ++it)
        if (*it == job) {
          queue_.erase(it);
          break;
        }
      job->status = JobStatus::Cancelled;
      job->error = "cancelled";
      job->completed = unix_now();
      keep_finished(job);
      ++version_;
    }
  }
  change_cv_.notify_all();
  return true;
}

void JobQueue::keep_finished(const std::shared_ptr<Job>& job) {
  job->stored_bytes = 0;
  for (const JobImage& im : job->images)
    job->stored_bytes += im.png.size() + im.parameters.size() + im.record.size() + im.prompt.size();
  finished_.push_back(job);
  finished_bytes_ += job->stored_bytes;
  // The newest stays whatever its size: its client is reading it now.
  while (finished_.size() > 1 &&
         (finished_.size() > kKeepFinished || finished_bytes_ > store_bytes_)) {
    finished_bytes_ -= finished_.front()->stored_bytes;
    jobs_.erase(finished_.front()->id);
    finished_.pop_front();
  }
}

void JobQueue::interrupt() {
  std::shared_ptr<Job> j;
  {
    std::lock_guard<std::mutex> l(mu_);
    j = current_;
  }
  if (j) cancel(j);
}

ProgressSnapshot JobQueue::progress(bool with_preview) const {
  std::lock_guard<std::mutex> l(mu_);
  ProgressSnapshot s;
  s.queued = int(queue_.size());
  if (!current_) return s;
  const Job& j = *current_;
  s.busy = true;
  s.interrupted = j.cancel_requested;
  s.job_id = j.id;
  s.job_no = j.part;
  s.job_count = int(j.parts.size());
  s.step = j.step;
  s.steps = j.steps;
  s.started = j.started;
  if (with_preview) s.preview = j.preview;
  // A1111's formula: 0.01 + job_no/job_count + step/steps/job_count.
  const double frac =
      (j.part + (j.steps > 0 ? double(j.step) / j.steps : 0.0)) / std::max(1, s.job_count);
  s.progress = std::min(1.0, 0.01 + frac);
  const double elapsed = unix_now() - j.started;
  s.eta_s = frac > 0 ? elapsed / frac - elapsed : 0;
  return s;
}

nlohmann::json JobQueue::job_json(const std::shared_ptr<Job>& job, bool with_images) const {
  std::lock_guard<std::mutex> l(mu_);
  const Job& j = *job;
  nlohmann::json r = {
      {"id", j.id}, {"status", status_name(j.status)}, {"created", j.created}, {"notes", j.notes}};
  if (j.started > 0) r["started"] = j.started;
  if (j.completed > 0) r["completed"] = j.completed;
  if (j.status == JobStatus::Queued) {
    int pos = 0;
    for (const auto& q : queue_) {
      if (q == job) break;
      ++pos;
    }
    r["queue_position"] = pos;
  }
  int total_images = 0;
  for (const auto& p : j.parts) total_images += p.n;
  const double frac = j.finished() && j.status == JobStatus::Completed
                          ? 1.0
                          : (j.part + (j.steps > 0 ? double(j.step) / j.steps : 0.0)) /
                                std::max<size_t>(1, j.parts.size());
  nlohmann::json pr = {{"step", j.step},         {"steps", j.steps},
                       {"part", j.part},         {"parts", int(j.parts.size())},
                       {"images", total_images}, {"fraction", frac}};
  if (j.status == JobStatus::Generating && frac > 0) {
    const double elapsed = unix_now() - j.started;
    pr["eta_s"] = elapsed / frac - elapsed;
  }
  r["progress"] = pr;
  // The live preview of the running part's first image (small: drawn at the model's or the
  // latent's size), on polls that ask for images.
  if (with_images && j.status == JobStatus::Generating && !j.preview.empty())
    r["preview"] = preview_base64(pipe_, j.preview);
  if (!j.error.empty()) r["error"] = {{"message", j.error}};
  if (j.status == JobStatus::Completed) {
    nlohmann::json imgs = nlohmann::json::array();
    for (size_t i = 0; i < j.images.size(); ++i) {
      nlohmann::json im = {{"index", i},
                           {"seed", j.images[i].seed},
                           {"sample_index", j.images[i].index},
                           {"parameters", j.images[i].parameters}};
      if (j.images[i].class_id >= 0) im["class"] = j.images[i].class_id;
      if (with_images)
        im["b64_json"] = base64_encode(j.images[i].png.data(), j.images[i].png.size());
      imgs.push_back(im);
    }
    r["result"] = {{"output_format", "png"}, {"images", imgs}};
  }
  return r;
}

void JobQueue::run() {
  while (true) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> l(mu_);
      work_cv_.wait(l, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      job = queue_.front();
      queue_.pop_front();
      current_ = job;
      job->status = JobStatus::Generating;
      job->started = unix_now();
      ++version_;
    }
    change_cv_.notify_all();
    uvit::adopt_thread_count();  // --threads, the OMP_NUM_THREADS cap: set on the main thread
    JobStatus end = JobStatus::Completed;
    std::string error;
    int status = 500;
    size_t k = 0;  // the part running
    try {
      for (; k < job->parts.size(); ++k) {
        GenerationRequest r = job->parts[k];
        r.progress = [&](const char*, int done, int total) {
          {
            std::lock_guard<std::mutex> l(mu_);
            if (total > 0) {
              job->step = done;
              job->steps = total;
            }
            ++version_;
            if (job->cancel_requested || shutting_down()) return false;
          }
          change_cv_.notify_all();
          return true;
        };
        if (pipe_.can_preview())  // kept cheaply (one sample's x0); drawn only when asked
          r.preview = [&](const float* x0, int, int, int, int) {
            std::lock_guard<std::mutex> l(mu_);
            job->preview.assign(x0, x0 + pipe_.config().spec.in_numel());
          };
        {
          std::lock_guard<std::mutex> l(mu_);
          if (job->cancel_requested || shutting_down()) throw Cancelled();
          job->part = int(k);
          job->step = 0;
          job->preview.clear();
        }
        GenerationResult res = pipe_.generate(r);
        std::vector<JobImage> made;
        for (const GeneratedImage& g : res.images)
          made.push_back(
              {png_bytes(g), g.parameters, g.record, g.prompt, g.seed, g.index, g.class_id});
        std::lock_guard<std::mutex> l(mu_);
        job->resolved = res.resolved;
        for (auto& m : made) job->images.push_back(std::move(m));
      }
    } catch (const Cancelled&) {
      end = JobStatus::Cancelled;
      error = "cancelled";
    } catch (const std::bad_alloc&) {
      end = JobStatus::Failed;
      error = kHostMemoryError;
      status = 503;
      log(LogLevel::Error, cat(job->id, " failed: ", error));
    } catch (const std::exception& e) {
      end = JobStatus::Failed;
      error = e.what();
      if (error.rfind("out of memory", 0) == 0) {  // the memory check (docs/memory.md)
        error += memory_hint(pipe_, job->parts[k]);
        status = 422;
      }
      log(LogLevel::Error, cat(job->id, " failed: ", error));
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      job->status = end;
      job->error = error;
      job->error_status = status;
      job->completed = unix_now();
      job->preview = {};
      if (end == JobStatus::Completed) job->part = int(job->parts.size());
      current_.reset();
      keep_finished(job);
      ++version_;
    }
    change_cv_.notify_all();
  }
}

}  // namespace uvit::serve
