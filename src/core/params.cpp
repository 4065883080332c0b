#include "uvit/params.hpp"

#include <algorithm>
#include <set>

#include "uvit/error.hpp"

namespace uvit {

void ParamTable::add(const std::string& name, std::vector<int64_t> shape, bool frozen) {
  ParamEntry e;
  e.name = name;
  e.frozen = frozen;
  e.numel = 1;
  for (auto d : shape) e.numel *= size_t(d);
  e.shape = std::move(shape);
  e.offset = total_;
  total_ += e.numel;
  add_trained(e);
  entries_.push_back(std::move(e));
}

void ParamTable::add_trained(const ParamEntry& e) {
  if (e.frozen || e.numel == 0) return;
  if (!trained_.empty() && trained_.back().second == e.offset)
    trained_.back().second += e.numel;
  else
    trained_.emplace_back(e.offset, e.offset + e.numel);
}

bool ParamTable::trains(size_t off) const {
  // The first range that ends after off; off is in it when it starts at or before off.
  const auto it = range_ending_after(trained_, off);
  return it != trained_.end() && it->first <= off;
}

void ParamTable::freeze_if(const std::function<bool(const ParamEntry&)>& f) {
  trained_.clear();
  for (ParamEntry& e : entries_) {
    e.frozen = e.frozen || f(e);
    add_trained(e);
  }
}

const ParamEntry* ParamTable::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

const ParamEntry& ParamTable::at(const std::string& name) const {
  const ParamEntry* e = find(name);
  if (!e) fail("no parameter named '", name, "'");
  return *e;
}

namespace {
// The strict state_dict check over any list of (name, shape).
template <class Name, class Shape>
void check_tensors(const ParamTable& t, size_t n, Name name_of, Shape shape_of,
                   const std::string& what) {
  for (size_t i = 0; i < n; ++i)
    UVIT_CHECK(name_of(i).rfind("adamw.", 0) != 0 && name_of(i).rfind("adan.", 0) != 0, what,
               ": a training state (optimizer moments), not network weights; give "
               "nnet_ema.safetensors (or nnet.safetensors) from the same run folder");
  std::set<std::string> seen;
  for (size_t i = 0; i < n; ++i) {
    const std::string& name = name_of(i);
    const std::vector<int64_t>& shape = shape_of(i);
    const ParamEntry* e = t.find(name);
    if (!e)
      fail(what, ": unexpected tensor '", name, "' ", shape_str(shape),
           " (not a parameter of this network config)");
    if (shape != e->shape)
      fail(what, ": tensor '", name, "' has shape ", shape_str(shape), ", the config expects ",
           shape_str(e->shape));
    if (!seen.insert(name).second) fail(what, ": tensor '", name, "' appears twice");
  }
  for (const auto& e : t.entries())
    if (!seen.count(e.name))
      fail(what, ": missing tensor '", e.name, "' ", shape_str(e.shape), " (", n, " of ",
           t.entries().size(), " tensors present)");
}
}  // namespace

void ParamTable::check(const NamedArrays& sd, const std::string& what) const {
  check_tensors(
      *this, sd.size(), [&](size_t i) -> const std::string& { return sd[i].first; },
      [&](size_t i) -> const std::vector<int64_t>& { return sd[i].second.shape; }, what);
}

void ParamTable::check(const std::vector<TensorInfo>& ts, const std::string& what) const {
  check_tensors(
      *this, ts.size(), [&](size_t i) -> const std::string& { return ts[i].name; },
      [&](size_t i) -> const std::vector<int64_t>& { return ts[i].shape; }, what);
}

}  // namespace uvit
