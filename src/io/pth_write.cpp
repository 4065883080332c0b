// torch.save's zip layout (torch >= 1.6; docs/formats.md "Writing .pth"): "archive/data.pkl" (the
// pickle), "archive/data/<key>" (one storage per tensor, raw little-endian bytes), then
// "archive/version" and "archive/byteorder"; every entry stored and its contents 64-byte aligned,
// as torch's own writer places them. The pickle uses only what torch.load(weights_only=True)
// allows: OrderedDict, _rebuild_tensor_v2 and the typed storage classes.
#include "io/pth_write.hpp"

#include <unordered_set>

#include "io/file.hpp"
#include "io/pickle_write.hpp"
#include "io/torch_storages.hpp"
#include "io/zip.hpp"
#include "uvit/error.hpp"
#include "uvit/io.hpp"

namespace uvit {

namespace {

constexpr uint64_t kAlign = 64;  // torch's PyTorchStreamWriter field alignment
const std::string kDir = "archive/";

// torch.XStorage of the dtype, as (module, class).
std::pair<std::string, std::string> storage_class(DType d) {
  for (auto& [s, t] : torch_format::kStorages)
    if (t == d) {
      const std::string full = s;
      const size_t dot = full.rfind('.');
      return {full.substr(0, dot), full.substr(dot + 1)};
    }
  fail("no torch storage type for ", dtype_name(d));
}

// An empty OrderedDict(), as torch pickles a tensor's backward hooks and a state_dict.
void ordered_dict(pickle::Writer& p) {
  p.global("collections", "OrderedDict").op(pickle::kEmptyTuple).op(pickle::kReduce);
}

// data.pkl: OrderedDict{name: _rebuild_tensor_v2(storage i, 0, shape, strides, False,
// OrderedDict())} in order, or {entry: that} when an entry is named.
std::string state_dict_pickle(const NamedArrays& tensors, const std::string& entry) {
  pickle::Writer p;
  if (!entry.empty()) p.op(pickle::kEmptyDict).str(entry);
  ordered_dict(p);
  if (!tensors.empty()) {
    p.op(pickle::kMark);
    for (size_t i = 0; i < tensors.size(); ++i) {
      const Array& a = tensors[i].second;
      std::vector<int64_t> stride(a.shape.size());
      int64_t s = 1;
      for (size_t d = a.shape.size(); d-- > 0;) {
        stride[d] = s;
        s *= a.shape[d];
      }
      const auto [module, cls] = storage_class(a.dtype);
      p.str(tensors[i].first).global("torch._utils", "_rebuild_tensor_v2").op(pickle::kMark);
      // The persistent id ('storage', torch.XStorage, key, location, numel) names data/<key>.
      p.op(pickle::kMark).str("storage").global(module, cls).str(std::to_string(i)).str("cpu");
      p.integer(a.numel()).op(pickle::kTuple).op(pickle::kBinPersId);
      p.integer(0).tuple(a.shape).tuple(stride).op(pickle::kNewFalse);
      ordered_dict(p);
      p.op(pickle::kTuple).op(pickle::kReduce);
    }
    p.op(pickle::kSetItems);
  }
  if (!entry.empty()) p.op(pickle::kSetItem);
  return p.op(pickle::kStop).bytes();
}

}  // namespace

void save_pth(const std::string& path, const NamedArrays& tensors, const std::string& entry,
              uint64_t zip64_at) {
  std::unordered_set<std::string> names;
  for (auto& [name, a] : tensors) {
    UVIT_CHECK(names.insert(name).second, path, ": duplicate tensor name '", name, "'");
    UVIT_CHECK(a.data.size() == size_t(a.numel()) * dtype_size(a.dtype), path, ": tensor '", name,
               "' holds ", a.data.size(), " bytes, its shape needs ",
               size_t(a.numel()) * dtype_size(a.dtype));
  }
  const std::string pkl = state_dict_pickle(tensors, entry);
  io::AtomicWriter w(path, io::AtomicWriter::Cache::kDirect);
  zip::Writer z([&w](const void* p, size_t n) { w.write(p, n); }, zip64_at);
  z.add(kDir + "data.pkl", {{pkl.data(), pkl.size()}}, kAlign);
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Array& a = tensors[i].second;
    z.add(kDir + "data/" + std::to_string(i), {{a.data.data(), a.data.size()}}, kAlign);
  }
  z.add(kDir + "version", {{"3\n", 2}}, kAlign);  // torch's current file format version
  z.add(kDir + "byteorder", {{"little", 6}}, kAlign);
  z.finish();
  w.commit();
}

}  // namespace uvit
