// Routes of `uvit serve` (docs/serve.md): request validation with 4xx messages, the three API
// families mapped onto GenerationRequests, and the job queue.
#include "serve/server.hpp"

#include <fcntl.h>
#include <httplib.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <ctime>
#include <map>

#include "core/signals.hpp"
#include "serve/base64.hpp"
#include "serve/jobs.hpp"
#include "uvit/flow.hpp"
#include "uvit/image.hpp"
#include "uvit/json_parse.hpp"
#include "uvit/log.hpp"
#include "uvit/metadata.hpp"

namespace uvit::serve {
namespace {

using httplib::Request;
using httplib::Response;
using nlohmann::json;

// The listening socket (-1: none). SIGINT/SIGTERM shut it down, which wakes the accept loop's
// poll() and fails its accept(): the loop ends and closes the socket itself, on its own thread.
// httplib's stop() from the handler closed it on the signal thread while the loop polled that
// descriptor (a number another thread could reuse meanwhile) and changed errno under the
// interrupted code (ThreadSanitizer, docs/fuzzing.md finding 16).
std::atomic<int> g_listen_fd{-1};

void on_signal(int) {
  const int saved = errno;
  shutting_down().store(true);  // lock-free atomics, shutdown(): safe in a signal handler
  if (const int fd = g_listen_fd.load(); fd >= 0) ::shutdown(fd, SHUT_RDWR);
  errno = saved;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void reply(Response& res, int status, const json& j) {
  res.status = status;
  res.set_content(dump(j), "application/json");
}

// Errors in each family's envelope: OpenAI {"error": {message, type, param, code}}, A1111
// {"error", "detail"}, ours {"error": {"code", "message"}}.
void send_error(const Request& req, Response& res, int status, const std::string& msg,
                const std::string& param = "") {
  if (req.path.rfind("/v1/", 0) == 0) {
    reply(res, status,
          {{"error",
            {{"message", msg},
             {"type", status == 429   ? "rate_limit_error"
                      : status >= 500 ? "server_error"
                                      : "invalid_request_error"},
             {"param", param.empty() ? json(nullptr) : json(param)},
             {"code", nullptr}}}});
  } else if (req.path.rfind("/sdapi/", 0) == 0) {
    reply(res, status,
          {{"error", status == 429   ? "QueueFull"
                     : status >= 500 ? "ServerError"
                                     : "BadRequest"},
           {"detail", msg}});
  } else {
    reply(res, status, {{"error", {{"code", status}, {"message", msg}}}});
  }
}

size_t g_max_body = size_t(8) << 20;

// The body read_body() put in req.body (at most g_max_body bytes), as a JSON object.
json parse_body(const Request& req) {
  if (req.body.empty()) return json::object();
  json j;
  try {
    j = parse_json(req.body, "the request body");
  } catch (const json::parse_error& e) {
    throw HttpError(400, cat("the request body is not valid JSON (byte ", e.byte, ")"));
  } catch (const Error& e) {  // nested too deeply, or a number beyond the double range
    throw HttpError(400, e.what());
  }
  if (!j.is_object()) throw HttpError(400, "the request body must be a JSON object");
  return j;
}

// A failed job's error for the A1111 and OpenAI routes (Job::error_status): a request too big for
// the memory check is the client's to change (422 with the job's message, which says what to ask
// for), host memory that ran out beyond it 503, anything else the server's (500). docs/serve.md.
void throw_if_failed(const Job& job) {
  if (job.status != JobStatus::Failed) return;
  throw HttpError(job.error_status,
                  job.error_status == 500 ? "generation failed: " + job.error : job.error);
}

// The job id of the /uvit/v1/jobs/ID routes (their regex's first group).
std::string job_id(const Request& req) {
  return req.matches.size() > 1 ? req.matches[1].str() : "";
}

bool has(const json& j, const char* k) { return j.contains(k) && !j.at(k).is_null(); }

double get_number(const json& j, const char* k, double def, double lo, double hi) {
  if (!has(j, k)) return def;
  const json& v = j.at(k);
  if (!v.is_number()) throw HttpError(422, cat(k, " must be a number, got ", dump(v)), k);
  const double d = v.get<double>();
  if (!(d >= lo && d <= hi))
    throw HttpError(422, cat(k, " must be in [", lo, ", ", hi, "], got ", d), k);
  return d;
}

int64_t get_int(const json& j, const char* k, int64_t def, int64_t lo, int64_t hi) {
  if (!has(j, k)) return def;
  const json& v = j.at(k);
  // Integral floats (20.0) are integers, as Python clients send them.
  if (!v.is_number() ||
      (v.is_number_float() && v.get<double>() != double(int64_t(v.get<double>()))))
    throw HttpError(422, cat(k, " must be an integer, got ", dump(v)), k);
  const double d = v.get<double>();
  if (d < double(lo) || d > double(hi))
    throw HttpError(422, cat(k, " must be in [", lo, ", ", hi, "], got ", dump(v)), k);
  return v.is_number_unsigned() ? int64_t(v.get<uint64_t>()) : v.get<int64_t>();
}

// A sampler option (GenerationRequest's `field`, its range uvit::field_range): `unset` when left
// out; given, it must lie in the range (in a request "unset" is leaving the field out).
double get_field(const json& j, const char* k, const char* field, double unset) {
  if (!has(j, k)) return unset;
  const double big = 1e15;  // exact in a double: the range check below has the say
  const double v = field_range(field).integer
                       ? double(get_int(j, k, 0, -int64_t(big), int64_t(big)))
                       : get_number(j, k, 0, -big, big);
  try {
    check_field(field, v, k);
  } catch (const RequestError& e) {
    throw HttpError(422, e.what(), k);
  }
  return v;
}

std::string get_string(const json& j, const char* k, const std::string& def = "") {
  if (!has(j, k)) return def;
  if (!j.at(k).is_string())
    throw HttpError(422, cat(k, " must be a string, got ", dump(j.at(k))), k);
  return j.at(k).get<std::string>();
}

bool get_bool(const json& j, const char* k, bool def) {
  if (!has(j, k)) return def;
  if (!j.at(k).is_boolean())
    throw HttpError(422, cat(k, " must be true or false, got ", dump(j.at(k))), k);
  return j.at(k).get<bool>();
}

// A bool query parameter as A1111's FastAPI (pydantic) reads one: true/t/yes/y/on/1 or
// false/f/no/n/off/0, any case; absent: def; anything else is refused naming the parameter.
bool query_bool(const Request& q, const char* k, bool def) {
  if (!q.has_param(k)) return def;
  const std::string v = q.get_param_value(k);
  std::string l;
  for (char ch : v) l += char(std::tolower(static_cast<unsigned char>(ch)));
  for (const char* t : {"true", "t", "yes", "y", "on", "1"})
    if (l == t) return true;
  for (const char* f : {"false", "f", "no", "n", "off", "0"})
    if (l == f) return false;
  throw HttpError(422, cat(k, " must be true or false (also yes/no, on/off, 1/0), got '", v, "'"),
                  k);
}

class Api {
 public:
  Api(Pipeline& p, const ServeOptions& o)
      : pipe_(p), opt_(o), jobs_(p, o.max_queue, o.job_store_bytes) {}

  void routes(httplib::Server& s);

 private:
  // What every generation request boils down to.
  struct Spec {
    GenerationRequest req;  // n, classes or prompts, negative prompt, sampler, steps, w, seed
    std::string label;      // the resolved class name / prompt
    std::vector<std::string> notes;
    // The request's keys of GenerationRequest's fields where they differ from the member names
    // (A1111's cfg_scale is guidance_w), for Pipeline::check's messages.
    std::map<std::string, std::string> keys;
    std::string key(const char* field) const {
      const auto it = keys.find(field);
      return it == keys.end() ? field : it->second;
    }
  };

  // The prompt as the model understands it: a class name or id, CLIP text, or nothing.
  void apply_prompt(Spec& s, const std::string& prompt, const std::string& field) const {
    switch (pipe_.kind()) {
      case ModelKind::Class: {
        if (prompt.empty())
          throw HttpError(
              422,
              cat(field, " must name a class of ", pipe_.model_name(), " (a name such as '",
                  pipe_.class_name(0).empty() ? "0" : pipe_.class_name(0), "' or an id 0..",
                  pipe_.num_classes() - 1, ")"),
              field);
        const int c = pipe_.class_from_name(prompt);
        if (c < 0)
          throw HttpError(
              422, unknown_class_message(pipe_.config(), field, prompt, "GET /uvit/v1/classes"),
              field);
        s.req.classes = {c};
        s.keys["classes"] = field;
        s.label = pipe_.class_name(c).empty() ? std::to_string(c) : pipe_.class_name(c);
        break;
      }
      case ModelKind::Text:  // Pipeline::check: the prompt needs --clip
        s.req.prompts = {prompt};
        s.keys["prompts"] = field;
        s.label = prompt;
        break;
      case ModelKind::Unconditional:
        if (!prompt.empty())
          s.notes.push_back("prompt ignored: " + pipe_.model_name() + " is unconditional");
        break;
    }
  }

  void apply_common(Spec& s, const json& b, const char* guidance_key) const {
    s.req.steps = int(get_int(b, "steps", 0, 0, 1000));
    s.req.seed = get_int(b, "seed", -1, -1, int64_t(0xffffffffffffLL));
    s.req.guidance_w = get_field(b, guidance_key, "guidance_w", -1);
    s.keys["guidance_w"] = guidance_key;
    if ((s.req.guidance_w > 1 || s.req.cfg_scale > 0) && !pipe_.can_guide()) {
      s.notes.push_back(cat(s.req.cfg_scale > 0 ? "uvit_scale" : guidance_key,
                            " ignored: ", pipe_.model_name(), " has no guidance"));
      s.req.guidance_w = 1;
    }
    // Ignored with a note where it does not apply (clients send one by default); a text model
    // without --clip refuses it (Pipeline::check).
    std::string neg = get_string(b, "negative_prompt");
    if (!neg.empty() && pipe_.kind() != ModelKind::Text)
      s.notes.push_back("negative_prompt ignored: it applies to text-to-image models only");
    else
      s.req.negative_prompt = neg;
    if (s.req.seed < 0) s.req.seed = int64_t(random_seed());
    apply_sampling(s, b);
  }

  // The sampler options of `uvit sample` (docs/serve.md, "Sampling options"): each checked here
  // with an error naming the field, then the whole request against the model (Pipeline::check,
  // naming our keys: a flow option on another preset, guidance channels beyond the network's, a
  // Skip-Cache it lacks, the sampler's name, the prompt), so that a bad request is refused before
  // it is queued.
  void apply_sampling(Spec& s, const json& b) const {
    s.req.shift = get_field(b, "shift", "shift", 0);
    s.req.cfg_interval = get_field(b, "cfg_interval", "cfg_interval", -1);
    s.req.cfg_power = get_field(b, "cfg_power", "cfg_power", -1);
    s.req.atol = get_field(b, "atol", "atol", 0);
    s.req.rtol = get_field(b, "rtol", "rtol", 0);
    s.req.skip_cache = int(get_field(b, "skip_cache", "skip_cache", 0));
    s.req.zero_init_steps = int(get_field(b, "zero_init_steps", "zero_init_steps", -1));
    if (has(b, "guidance_channels")) {
      const json& v = b.at("guidance_channels");
      try {
        s.req.guidance_channels = guidance_channels_from(v.is_string() ? v.get<std::string>()
                                                         : v.is_number_integer() ? dump(v)
                                                                                 : "?",
                                                         "guidance_channels");
      } catch (const Error&) {
        throw HttpError(422, "guidance_channels must be \"all\" or an integer >= 1, got " + dump(v),
                        "guidance_channels");
      }
    }
    try {
      pipe_.check(s.req, [&s](const char* f) { return s.key(f); });
    } catch (const RequestError& e) {
      throw HttpError(422, e.what(), s.key(e.field.c_str()));
    } catch (const Error& e) {
      throw HttpError(422, e.what());
    }
  }

  void set_sampler(Spec& s, const std::string& name, const char* key) const {
    s.req.sampler = name;  // checked with the rest (Pipeline::check)
    s.keys["sampler"] = key;
  }

  void check_size(Spec& s, int w, int h) const {
    const int r = pipe_.resolution(), rw = pipe_.width();
    if ((w > 0 && w != rw) || (h > 0 && h != r))
      s.notes.push_back(cat("generated at the model's native size ", rw, "x", r, " (asked ",
                            w > 0 ? w : rw, "x", h > 0 ? h : r, ")"));
  }

  void txt2img(const Request& req, Response& res);
  void openai_generate(const Request& req, Response& res);
  void native_submit(const Request& req, Response& res);
  void native_events(const Request& req, Response& res);
  json capabilities() const;
  json sd_model() const;
  std::string model_title() const {
    return pipe_.model_name() + " [" + pipe_.weights_sha256().substr(0, 10) + "]";
  }

  Pipeline& pipe_;
  ServeOptions opt_;
  JobQueue jobs_;
};

void Api::txt2img(const Request& req, Response& res) {
  const json b = parse_body(req);
  Spec s;
  apply_prompt(s, get_string(b, "prompt"), "prompt");
  std::string sampler = get_string(b, "sampler_name");
  if (sampler.empty()) sampler = get_string(b, "sampler_index");
  set_sampler(s, sampler, "sampler_name");
  apply_common(s, b, "cfg_scale");
  const int batch = int(get_int(b, "batch_size", 1, 1, opt_.max_images));
  const int iters = int(get_int(b, "n_iter", 1, 1, opt_.max_images));
  if (batch * iters > opt_.max_images)
    throw HttpError(422,
                    cat("batch_size x n_iter = ", batch * iters, " images; at most ",
                        opt_.max_images, " per request"),
                    "batch_size");
  check_size(s, int(get_int(b, "width", 0, 0, 1 << 16)), int(get_int(b, "height", 0, 0, 1 << 16)));
  const bool send_images = get_bool(b, "send_images", true);
  // A1111's seeds: image i is (seed + i, index 0), so all_seeds[i] regenerates it alone.
  std::vector<GenerationRequest> parts;
  for (int i = 0; i < batch * iters; ++i) {
    GenerationRequest r = s.req;
    r.n = 1;
    r.seed = s.req.seed + i;
    parts.push_back(std::move(r));
  }
  const auto job = jobs_.submit(std::move(parts), s.notes);
  jobs_.wait(job);
  throw_if_failed(*job);
  json images = json::array(), infotexts = json::array(), seeds = json::array(),
       prompts = json::array();
  for (const JobImage& im : job->images) {
    if (send_images) images.push_back(base64_encode(im.png.data(), im.png.size()));
    infotexts.push_back(im.parameters);
    seeds.push_back(im.seed);
    prompts.push_back(s.label);
  }
  char stamp[32];
  const std::time_t t = std::time_t(job->created);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(stamp, sizeof stamp, "%Y%m%d%H%M%S", &tm);
  const GenerateOptions& g = job->resolved;
  json info = {{"prompt", s.label},
               {"all_prompts", prompts},
               {"negative_prompt", s.req.negative_prompt},
               {"seed", s.req.seed},
               {"all_seeds", seeds},
               {"subseed", -1},
               {"width", pipe_.width()},
               {"height", pipe_.resolution()},
               {"sampler_name", g.sampler.empty() ? pipe_.default_sampler() : g.sampler},
               {"cfg_scale", g.sampler.empty() ? pipe_.default_guidance_w() : g.cfg_scale + 1},
               {"steps", g.steps > 0 ? g.steps : pipe_.default_steps()},
               {"batch_size", batch},
               {"n_iter", iters},
               {"sd_model_name", pipe_.model_name()},
               {"sd_model_hash", pipe_.weights_sha256().substr(0, 10)},
               {"infotexts", infotexts},
               {"index_of_first_image", 0},
               {"job_timestamp", stamp},
               {"interrupted", job->status == JobStatus::Cancelled},
               {"extra_generation_params", json::object()},
               {"notes", s.notes},
               {"version", std::string("uvit.cpp ") + version_string()}};
  reply(res, 200, {{"images", images}, {"parameters", b}, {"info", dump(info)}});
}

void Api::openai_generate(const Request& req, Response& res) {
  const json b = parse_body(req);
  if (!has(b, "prompt") && pipe_.kind() != ModelKind::Unconditional)
    throw HttpError(400, "prompt is required", "prompt");
  Spec s;
  apply_prompt(s, get_string(b, "prompt"), "prompt");
  set_sampler(s, get_string(b, "sampler"), "sampler");
  apply_common(s, b, "guidance_scale");
  s.req.n = int(get_int(b, "n", 1, 1, std::min(10, opt_.max_images)));
  const std::string fmt = get_string(b, "response_format", "b64_json");
  if (fmt != "b64_json")
    throw HttpError(400, "response_format must be b64_json (this server returns no URLs)",
                    "response_format");
  const std::string size = get_string(b, "size", "auto");
  int w = 0, h = 0;
  if (size != "auto" && std::sscanf(size.c_str(), "%dx%d", &w, &h) != 2)
    throw HttpError(400, "size must be WIDTHxHEIGHT or auto, got '" + size + "'", "size");
  check_size(s, w, h);
  const std::string model = get_string(b, "model");
  if (!model.empty() && model != pipe_.model_name())
    s.notes.push_back("model '" + model + "' ignored: this server serves " + pipe_.model_name());
  const auto job = jobs_.submit({s.req}, s.notes);
  jobs_.wait(job);
  if (job->status == JobStatus::Cancelled) throw HttpError(409, "the generation was cancelled");
  throw_if_failed(*job);
  json data = json::array();
  for (const JobImage& im : job->images)
    data.push_back(
        {{"b64_json", base64_encode(im.png.data(), im.png.size())}, {"revised_prompt", s.label}});
  reply(res, 200,
        {{"created", int64_t(job->created)},
         {"data", data},
         {"output_format", "png"},
         {"size", cat(pipe_.width(), "x", pipe_.resolution())}});
}

void Api::native_submit(const Request& req, Response& res) {
  const json b = parse_body(req);
  Spec s;
  if (has(b, "class") && pipe_.kind() == ModelKind::Class) {
    const json& c = b.at("class");
    if (c.is_number_integer())
      apply_prompt(s, std::to_string(c.get<int64_t>()), "class");
    else if (c.is_string())
      apply_prompt(s, c.get<std::string>(), "class");
    else
      throw HttpError(422, "class must be an id or a name, got " + dump(c), "class");
  } else {
    apply_prompt(s, get_string(b, "prompt"), "prompt");
  }
  if (has(b, "uvit_scale") && has(b, "guidance_w"))
    throw HttpError(422, "give guidance_w or uvit_scale, not both", "uvit_scale");
  s.req.cfg_scale = get_field(b, "uvit_scale", "cfg_scale", -1);  // U-ViT's s exactly (w = s + 1)
  s.keys["cfg_scale"] = "uvit_scale";
  set_sampler(s, get_string(b, "sampler"), "sampler");
  apply_common(s, b, "guidance_w");
  s.req.n = int(get_int(b, "n", 1, 1, opt_.max_images));
  s.req.first_index = uint64_t(get_int(b, "first_index", 0, 0, int64_t(1) << 40));
  const auto job = jobs_.submit({s.req}, s.notes);
  json j = jobs_.job_json(job, false);
  j["poll_url"] = "/uvit/v1/jobs/" + job->id;
  j["events_url"] = "/uvit/v1/jobs/" + job->id + "/events";
  j["seed"] = s.req.seed;
  reply(res, 202, j);
}

void Api::native_events(const Request& req, Response& res) {
  const auto job = jobs_.find(job_id(req));
  if (!job) throw HttpError(404, "no job " + job_id(req) + " (unknown or expired)");
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [this, job](size_t, httplib::DataSink& sink) {
        uint64_t v = 0;
        // At most one event per change, a keep-alive comment every 15 s, until the job ends or
        // the client goes away. Every stream starts with a progress event, also for a job that
        // finished before the client subscribed (a tiny model's job can end in a millisecond).
        for (int idle = 0, sent = 0; sink.is_writable(); ++sent) {
          json j = jobs_.job_json(job, false);
          const std::string st = j["status"];
          const bool end = st == "completed" || st == "failed" || st == "cancelled";
          if (end && sent == 0) {
            const std::string first = "event: progress\ndata: " + dump(j) + "\n\n";
            if (!sink.write(first.data(), first.size())) return false;
          }
          const std::string ev = !end ? "progress" : st == "completed" ? "done" : "error";
          if (end) j = jobs_.job_json(job, true);
          const std::string msg = "event: " + ev + "\ndata: " + dump(j) + "\n\n";
          if (!sink.write(msg.data(), msg.size())) return false;
          if (end) break;
          const uint64_t nv = jobs_.wait_change(v, 1.0);
          if (nv == v && ++idle % 15 == 0 && !sink.write(": keep-alive\n\n", 14)) return false;
          v = nv;
        }
        sink.done();
        return true;
      });
}

json Api::capabilities() const {
  json samplers = json::array();
  for (const std::string& n : sampler_names()) samplers.push_back(n);
  return {{"model",
           {{"name", pipe_.model_name()},
            {"kind", model_kind_name(pipe_.kind())},
            {"resolution", pipe_.resolution()},
            {"channels", pipe_.channels()},
            {"num_classes", pipe_.num_classes()},
            {"weights", pipe_.weights_name()},
            {"sha256", pipe_.weights_sha256()},
            {"can_encode_prompts", pipe_.can_encode_prompts()}}},
          {"defaults",
           {{"sampler", pipe_.default_sampler()},
            {"steps", pipe_.default_steps()},
            {"guidance_w", pipe_.default_guidance_w()}}},
          {"samplers", samplers},
          {"limits",
           {{"max_images", opt_.max_images},
            {"max_queue", opt_.max_queue},
            {"job_store_bytes", opt_.job_store_bytes}}},
          {"version", version_string()},
          {"commit", commit_string()}};
}

json Api::sd_model() const {
  return {{"title", model_title()},
          {"model_name", pipe_.model_name()},
          {"hash", pipe_.weights_sha256().substr(0, 10)},
          {"sha256", pipe_.weights_sha256()},
          {"filename", pipe_.weights_name()},
          {"config", nullptr}};
}

// Every handler runs inside this: HttpError -> its status, uvit::Error -> 422, host memory
// exhausted -> 503 (the server goes on), else 500.
template <class F>
httplib::Server::Handler guarded(F f) {
  return [f](const Request& req, Response& res) {
    try {
      f(req, res);
    } catch (const HttpError& e) {
      send_error(req, res, e.status, e.what(), e.param);
    } catch (const Error& e) {
      send_error(req, res, 422, e.what());
    } catch (const std::bad_alloc&) {
      send_error(req, res, 503, kHostMemoryError);
    } catch (const std::exception& e) {
      send_error(req, res, 500, e.what());
    }
  };
}

enum class Body { Json, None };

// Every POST route reads its body here, in a content-reader handler, which cpp-httplib 0.11 calls
// before it would read the body itself: it caps an application/x-www-form-urlencoded body (what
// `curl -d` sends) at 8192 bytes, so JSON sent that way gets the same g_max_body as any other.
// A body over the limit is read to its end (up to 4 x the limit) and dropped, so that the client
// gets the 413 rather than a reset. `curl -X POST URL` sends neither a body nor a Content-Length
// (which httplib would read as "body until the connection closes"): fine where the route takes
// no body (interrupt, cancel), a 400 naming it where it needs one.
void fill_body(Body kind, const Request& req, Response& res, const httplib::ContentReader& read) {
  if (!req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
    if (kind == Body::Json)
      throw HttpError(400, "POST " + req.path +
                               " sent no body and no Content-Length: send the JSON body "
                               "(curl -d '{...}')");
    return;
  }
  if (req.is_multipart_form_data()) {  // curl -F: read to its end, then refused
    read([](const httplib::MultipartFormData&) { return true; },
         [](const char*, size_t) { return true; });
    throw HttpError(415, "the body is multipart/form-data; send it as JSON (curl -d '{...}')");
  }
  std::string body;
  size_t total = 0;
  const bool ok = read([&](const char* d, size_t n) {
    total += n;
    if (total <= g_max_body) body.append(d, n);
    return total <= 4 * g_max_body;
  });
  if (total > g_max_body || res.status == 413) {  // 413: httplib skipped a longer Content-Length
    const size_t sent = std::max<size_t>(
        total, std::strtoull(req.get_header_value("Content-Length").c_str(), nullptr, 10));
    throw HttpError(
        413, cat("the request body is too large (", sent, " bytes; at most ", g_max_body, ")"));
  }
  if (!ok) throw HttpError(400, "the request body was cut short (the client stopped sending)");
  // The Request is httplib's non-const object (Server::routing); a content-reader handler gets it
  // const with the body left for us to read.
  const_cast<Request&>(req).body = std::move(body);
}

template <class F>
httplib::Server::HandlerWithContentReader read_body(Body kind, F f) {
  return [kind, f](const Request& req, Response& res, const httplib::ContentReader& read) {
    guarded([&](const Request& q, Response& r) {
      fill_body(kind, q, r, read);
      f(q, r);
    })(req, res);
  };
}

void Api::routes(httplib::Server& s) {
  s.Get("/", [](const Request&, Response& res) {
    res.set_content(page_html(), "text/html; charset=utf-8");
  });
  s.Get("/health", [](const Request&, Response& res) { reply(res, 200, {{"status", "ok"}}); });

  s.Post("/sdapi/v1/txt2img",
         read_body(Body::Json, [this](const Request& q, Response& r) { txt2img(q, r); }));
  s.Get("/sdapi/v1/progress", guarded([this](const Request& q, Response& r) {
          // A1111's skip_current_image (default false): the running job's preview as base64 PNG.
          const bool skip = query_bool(q, "skip_current_image", false);
          const ProgressSnapshot p = jobs_.progress(!skip);
          json image = nullptr;
          if (!p.preview.empty()) image = preview_base64(pipe_, p.preview);
          reply(r, 200,
                {{"progress", p.busy ? p.progress : 0.0},
                 {"eta_relative", p.eta_s},
                 {"state",
                  {{"skipped", false},
                   {"interrupted", p.interrupted},
                   {"stopping_generation", false},
                   {"job", p.job_id},
                   {"job_count", p.job_count},
                   {"job_timestamp", ""},
                   {"job_no", p.job_no},
                   {"sampling_step", p.step},
                   {"sampling_steps", p.steps},
                   {"queued", p.queued}}},
                 {"current_image", image},
                 {"textinfo", p.busy ? cat("image ", p.job_no + 1, "/", p.job_count, ", step ",
                                           p.step, "/", p.steps)
                                     : std::string()}});
        }));
  s.Post("/sdapi/v1/interrupt", read_body(Body::None, [this](const Request&, Response& r) {
           jobs_.interrupt();
           reply(r, 200, json::object());
         }));
  s.Post("/sdapi/v1/png-info", read_body(Body::Json, [](const Request& q, Response& r) {
           const json b = parse_body(q);
           const std::string img = get_string(b, "image");
           if (img.empty()) throw HttpError(422, "image (base64 PNG) is required", "image");
           std::vector<uint8_t> png;
           try {
             png = base64_decode(img);
           } catch (const Error& e) {
             throw HttpError(422, e.what(), "image");
           }
           std::map<std::string, std::string> text;
           try {
             text = decode_png_text(png.data(), png.size(), "image");
           } catch (const Error& e) {
             throw HttpError(422, e.what(), "image");
           }
           json items = json::object(), params = json::object();
           std::string info;
           for (const auto& [k, v] : text) {
             if (k == "parameters")
               info = v;
             else
               items[k] = v;
           }
           if (!info.empty())
             for (const auto& [k, v] : parse_a1111_parameters(info)) params[k] = v;
           reply(r, 200, {{"info", info}, {"items", items}, {"parameters", params}});
         }));
  s.Get("/sdapi/v1/samplers", guarded([this](const Request&, Response& r) {
          // Ours, each with the A1111 names that map to it (canonical_sampler).
          const std::vector<std::pair<std::string, std::vector<std::string>>> flow_names = {
              {"euler", {"Euler", "k_euler"}},
              {"heun", {"Heun", "k_heun"}},
              {"euler_maruyama", {"Euler a", "k_euler_a"}},
              {"dopri5", {}}};
          const std::vector<std::pair<std::string, std::vector<std::string>>> eps_names = {
              {"dpm-solver", {"DPM Solver"}},
              {"dpm-solver++", {"DPM++ 2S"}},
              {"dpm-solver++2m", {"DPM++ 2M", "k_dpmpp_2m"}},
              {"euler-maruyama", {"Euler a", "k_euler_a"}},
              {"euler-ode", {"Euler", "k_euler"}},
              {"ddpm", {"DDPM"}},
              {"ddim", {"DDIM"}}};
          json a = json::array();
          for (const auto& [n, al] : is_flow(pipe_.config()) ? flow_names : eps_names)
            a.push_back({{"name", n}, {"aliases", al}, {"options", json::object()}});
          reply(r, 200, a);
        }));
  s.Get("/sdapi/v1/sd-models",
        guarded([this](const Request&, Response& r) { reply(r, 200, json::array({sd_model()})); }));
  s.Get("/sdapi/v1/options", guarded([this](const Request&, Response& r) {
          reply(r, 200, {{"sd_model_checkpoint", model_title()}, {"samples_format", "png"}});
        }));
  s.Post("/sdapi/v1/options", read_body(Body::Json, [this](const Request& q, Response& r) {
           const json b = parse_body(q);
           const std::string m = get_string(b, "sd_model_checkpoint");
           if (!m.empty() && m != model_title() && m != pipe_.model_name())
             throw HttpError(404,
                             "model '" + m + "' is not loaded; this server serves " + model_title(),
                             "sd_model_checkpoint");
           reply(r, 200, json::object());
         }));

  s.Post("/v1/images/generations",
         read_body(Body::Json, [this](const Request& q, Response& r) { openai_generate(q, r); }));
  s.Get("/v1/models", guarded([this](const Request&, Response& r) {
          reply(r, 200,
                {{"object", "list"},
                 {"data", json::array({{{"id", pipe_.model_name()},
                                        {"object", "model"},
                                        {"created", 0},
                                        {"owned_by", "uvit.cpp"}}})}});
        }));

  s.Get("/uvit/v1/capabilities",
        guarded([this](const Request&, Response& r) { reply(r, 200, capabilities()); }));
  s.Get("/uvit/v1/classes", guarded([this](const Request&, Response& r) {
          json a = json::array();
          for (int c = 0; c < pipe_.num_classes(); ++c)
            a.push_back({{"id", c}, {"name", pipe_.class_name(c)}});
          reply(r, 200, {{"classes", a}});
        }));
  s.Post("/uvit/v1/jobs",
         read_body(Body::Json, [this](const Request& q, Response& r) { native_submit(q, r); }));
  s.Get(R"(/uvit/v1/jobs/([\w-]+))", guarded([this](const Request& q, Response& r) {
          const auto job = jobs_.find(job_id(q));
          if (!job) throw HttpError(404, "no job " + job_id(q) + " (unknown or expired)");
          reply(r, 200, jobs_.job_json(job, true));
        }));
  s.Get(R"(/uvit/v1/jobs/([\w-]+)/events)",
        guarded([this](const Request& q, Response& r) { native_events(q, r); }));
  s.Post(R"(/uvit/v1/jobs/([\w-]+)/cancel)",
         read_body(Body::None, [this](const Request& q, Response& r) {
           const auto job = jobs_.find(job_id(q));
           if (!job) throw HttpError(404, "no job " + job_id(q) + " (unknown or expired)");
           const bool did = jobs_.cancel(job);
           json j = jobs_.job_json(job, false);
           j["cancel_requested"] = did;
           reply(r, did ? 202 : 409, j);
         }));
  // Any other POST: a content-reader route too, so that httplib does not read its body first.
  s.Post(".*", read_body(Body::None, [](const Request& q, Response&) {
           throw HttpError(404, "no endpoint POST " + q.path);
         }));
}

// The listening socket's options, for the server and check_can_listen's probe alike. httplib's
// default adds SO_REUSEPORT: a second server on a busy port then starts, and the kernel splits the
// connections between the two (a job polled on the other one is 404).
void listen_socket_options(int sock) {
  int yes = 1;
  ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
}

// The HTTP threads. on_idle runs in the accept loop's idle wakeups (set_idle_interval): a
// SIGINT/SIGTERM that came while the loop was being restarted (run_server) found no running server
// to stop(), so the loop stops itself here.
class HttpThreads : public httplib::ThreadPool {
 public:
  HttpThreads(size_t n, httplib::Server& s) : ThreadPool(n), server_(s) {}
  void on_idle() override {
    if (shutting_down()) server_.stop();
  }

 private:
  httplib::Server& server_;
};

std::string listen_error(const std::string& host, int port) {
  return cat("serve: cannot listen on ", host, ":", port,
             " (in use, or not an address of this machine)");
}

}  // namespace

void check_can_listen(const std::string& host, int port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  bool ok = false;
  if (::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res) == 0 && res) {
    const int sock = ::socket(res->ai_family, res->ai_socktype, res->ai_protocol);
    if (sock >= 0) {
      listen_socket_options(sock);
      ok = ::bind(sock, res->ai_addr, res->ai_addrlen) == 0;
      ::close(sock);
    }
    ::freeaddrinfo(res);
  }
  UVIT_CHECK(ok, listen_error(host, port));
}

void run_server(Pipeline& pipe, const ServeOptions& o) {
  httplib::Server s;
  // Threads for the clients waiting on queued jobs, plus progress, cancel and event streams.
  const int threads = o.max_queue + 16;
  s.new_task_queue = [threads, &s] { return new HttpThreads(size_t(threads), s); };
  g_max_body = o.max_body;
  s.set_payload_max_length(4 * o.max_body);
  s.set_read_timeout(30);
  s.set_write_timeout(30);
  // httplib writes a response's headers and body in two sends: with Nagle's algorithm the body
  // waited for the client's delayed ACK, 40 ms per request on a keep-alive connection (the page's
  // polls, a Python requests.Session; bench/serve_post.sh).
  s.set_tcp_nodelay(true);
  const std::string key = o.api_key;
  s.set_pre_routing_handler([key](const Request& req, Response& res) {
    // CORS as sd.cpp's server does it: echo the origin, allow any method and header.
    const std::string origin = req.get_header_value("Origin");
    res.set_header("Access-Control-Allow-Origin", origin.empty() ? "*" : origin);
    res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    res.set_header("Access-Control-Allow-Headers", "*");
    res.set_header("Vary", "Origin");
    if (req.method == "OPTIONS") {
      res.status = 204;
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!key.empty() && req.path != "/" && req.path != "/health" &&
        req.get_header_value("Authorization") != "Bearer " + key) {
      send_error(req, res, 401, "missing or wrong API key (send Authorization: Bearer KEY)");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_error_handler([](const Request& req, Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404)
      send_error(req, res, 404, "no endpoint " + req.method + " " + req.path);
    else if (res.status == 413)  // a PUT or PATCH body (POSTs: read_body)
      send_error(req, res, 413, "the request body is too large");
    else
      send_error(req, res, res.status, "HTTP " + std::to_string(res.status));
  });
  s.set_exception_handler([](const Request& req, Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg = e.what();
    } catch (...) {
    }
    send_error(req, res, 500, msg);
  });
  Api api(pipe, o);
  api.routes(s);
  // cpp-httplib 0.11's accept loop retries accept() on EINTR, EAGAIN and EMFILE only; any other
  // error ends it, and run_server returned: the server exited 0 without a word. A debugger's call
  // into the process (gdb `call`/`print f()`) interrupts a blocked accept() with the kernel's
  // internal ERESTARTSYS (errno 512). So the listening socket is non-blocking and the loop waits
  // in poll() (set_idle_interval), which httplib retries or falls through to an accept() that
  // cannot block (EAGAIN: retried). What still ends the loop (Linux passes a failed connection's
  // network error, ENETDOWN, EPROTO, ..., on to accept(); ENFILE, ENOBUFS) is logged and the
  // server listens again. docs/serve.md.
  s.set_socket_options([](int sock) {
    listen_socket_options(sock);
    ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);
    g_listen_fd.store(sock);
  });
  s.set_idle_interval(1);
  // Port 0: the kernel picks a free one, named in the startup line; a rebind takes that same one.
  int port = o.port;
  if (port == 0) {
    port = s.bind_to_any_port(o.host);
    UVIT_CHECK(port > 0, listen_error(o.host, 0));
  } else {
    UVIT_CHECK(s.bind_to_port(o.host, port), listen_error(o.host, port));
  }
  const SignalScope stop_on_signal({SIGINT, SIGTERM}, on_signal);  // restored on return
  const std::string serving =
      cat("serving ", pipe.model_name(), " on http://", o.host, ":", port, "/");
  if (o.announce)
    o.announce(serving);
  else
    log(LogLevel::Info, serving);
  while (!s.listen_after_bind()) {
    g_listen_fd.store(-1);  // httplib closed it
    if (shutting_down()) break;
    log(LogLevel::Warn, "serve: accepting a connection failed; listening again");
    UVIT_CHECK(s.bind_to_port(o.host, port), listen_error(o.host, port));
  }
  g_listen_fd.store(-1);
}

}  // namespace uvit::serve
