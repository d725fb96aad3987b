// Python bindings of the packer: reads TreeSequence/Branch objects (duck-typed attributes) and
// their numpy int32 arrays in place (numpy's array struct, cheaper than the buffer protocol for
// 10^5 small arrays), packs with the GIL released, and returns new numpy arrays in a dict.
#include <Python.h>
#include <pybind11/numpy.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "packer.hpp"

namespace py = pybind11;

namespace swirl {
namespace {

struct Names {
  py::object context, branches, offset, tokens, weight;
  int int32_num = 0;
};

const Names& names() {
  static const Names* n = [] {
    auto* out = new Names();  // leaked on purpose: must outlive interpreter-exit destructors
    out->int32_num = py::dtype::of<std::int32_t>().num();
    const auto intern = [](const char* s) {
      return py::reinterpret_steal<py::object>(PyUnicode_InternFromString(s));
    };
    out->context = intern("context");
    out->branches = intern("branches");
    out->offset = intern("offset");
    out->tokens = intern("tokens");
    out->weight = intern("weight");
    return out;
  }();
  return *n;
}

py::object get_attr(py::handle obj, const py::object& name) {
  PyObject* value = PyObject_GetAttr(obj.ptr(), name.ptr());
  if (value == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(value);
}

// Keeps the arrays (or contiguous copies of strided or unaligned ones) alive while packing.
class TokenArrays {
 public:
  // `name` is built only on error.
  template <typename Name>
  TokenSpan read(py::object array, Name&& name) {
    if (!py::isinstance<py::array>(array)) throw fail(name);
    const auto a = py::reinterpret_borrow<py::array>(array);
    const py::dtype dtype = a.dtype();
    const char order = dtype.byteorder();
    const bool native_order =
        order == '=' || order == '|' || order == (PY_LITTLE_ENDIAN ? '<' : '>');
    if (a.ndim() != 1 || dtype.num() != names().int32_num || !native_order) throw fail(name);
    const auto size = static_cast<std::int64_t>(a.shape(0));
    const auto* data = static_cast<const char*>(a.data());
    const py::ssize_t stride = a.strides(0);
    keep_.push_back(std::move(array));
    if (size == 0 || (stride == 4 && reinterpret_cast<std::uintptr_t>(data) % 4 == 0))
      return {reinterpret_cast<const std::int32_t*>(data), size};
    std::vector<std::int32_t>& copy = copies_.emplace_back(static_cast<std::size_t>(size));
    for (std::int64_t k = 0; k < size; ++k) std::memcpy(&copy[k], data + k * stride, 4);
    return {copy.data(), size};
  }

 private:
  template <typename Name>
  static py::value_error fail(Name&& name) {
    return py::value_error(name() + " must be a 1-D numpy int32 array");
  }

  std::vector<py::object> keep_;
  std::deque<std::vector<std::int32_t>> copies_;
};

// A tuple snapshot of a list or tuple: attribute reads may run Python code that mutates a list.
py::tuple snapshot(py::handle obj, const std::string& what) {
  if (!PyList_Check(obj.ptr()) && !PyTuple_Check(obj.ptr()))
    throw py::value_error(what + " must be a list");
  return py::reinterpret_steal<py::tuple>(PySequence_Tuple(obj.ptr()));
}

std::int64_t read_offset(py::handle branch, std::size_t i, std::size_t j) {
  py::object value = get_attr(branch, names().offset);
  PyObject* index = PyNumber_Index(value.ptr());
  long long offset = index == nullptr ? -1 : PyLong_AsLongLong(index);
  Py_XDECREF(index);
  if (PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(branch_name(i, j) + ".offset must be an int64 integer");
  }
  return offset;
}

double read_weight(py::handle branch, std::size_t i, std::size_t j) {
  py::object value = get_attr(branch, names().weight);
  const double weight = PyFloat_AsDouble(value.ptr());
  if (weight == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(branch_name(i, j) + ".weight must be a real number");
  }
  return weight;
}

template <typename T>
py::array_t<T> empty_array(std::initializer_list<py::ssize_t> shape) {
  return py::array_t<T>(std::vector<py::ssize_t>(shape));
}

py::dict pack(py::handle sequences, std::int64_t max_tokens, bool share_prefixes,
              std::int64_t vocab_size, std::int64_t pad_id) {
  const py::tuple seqs = snapshot(sequences, "sequences");
  const std::size_t n = seqs.size();

  TokenArrays arrays;
  PackInput input;
  input.sequences.resize(n);
  // Type checks, sequence by sequence: context, branches, then each branch's fields.
  for (std::size_t i = 0; i < n; ++i) {
    py::handle seq = PyTuple_GET_ITEM(seqs.ptr(), i);
    SequenceInput& s = input.sequences[i];
    s.context =
        arrays.read(get_attr(seq, names().context), [&] { return sequence_name(i) + ".context"; });
    const py::tuple branches =
        snapshot(get_attr(seq, names().branches), sequence_name(i) + ".branches");
    const std::size_t count = branches.size();
    s.first_branch = static_cast<std::int64_t>(input.branches.size());
    s.num_branches = static_cast<std::int64_t>(count);
    for (std::size_t j = 0; j < count; ++j) {
      py::handle branch = PyTuple_GET_ITEM(branches.ptr(), j);
      BranchInput b;
      b.offset = read_offset(branch, i, j);
      b.tokens = arrays.read(get_attr(branch, names().tokens),
                             [&] { return branch_name(i, j) + ".tokens"; });
      b.weight = read_weight(branch, i, j);
      input.branches.push_back(b);
    }
  }

  PackOptions options;
  options.max_tokens = max_tokens;
  options.share_prefixes = share_prefixes;
  options.vocab_size = vocab_size;
  options.pad_id = pad_id;
  std::unique_ptr<Packer> packer;
  {
    py::gil_scoped_release release;
    packer = std::make_unique<Packer>(input, options);
  }

  const py::ssize_t rows = packer->rows(), length = packer->length(), m = packer->targets();
  auto input_ids = empty_array<std::int32_t>({rows, length});
  auto position_ids = empty_array<std::int32_t>({rows, length});
  auto parent = empty_array<std::int32_t>({rows, length});
  auto subtree_end = empty_array<std::int32_t>({rows, length});
  auto row_lengths = empty_array<std::int32_t>({rows});
  auto target_rows = empty_array<std::int64_t>({m});
  auto target_ids = empty_array<std::int32_t>({m});
  auto target_weights = empty_array<float>({m});
  auto target_branch = empty_array<std::int32_t>({m});
  PackOutput out;
  out.input_ids = input_ids.mutable_data();
  out.position_ids = position_ids.mutable_data();
  out.parent = parent.mutable_data();
  out.subtree_end = subtree_end.mutable_data();
  out.row_lengths = row_lengths.mutable_data();
  out.target_rows = target_rows.mutable_data();
  out.target_ids = target_ids.mutable_data();
  out.target_weights = target_weights.mutable_data();
  out.target_branch = target_branch.mutable_data();
  {
    py::gil_scoped_release release;
    packer->write(out);
  }

  py::dict result;
  result["input_ids"] = input_ids;
  result["position_ids"] = position_ids;
  result["parent"] = parent;
  result["subtree_end"] = subtree_end;
  result["row_lengths"] = row_lengths;
  result["target_rows"] = target_rows;
  result["target_ids"] = target_ids;
  result["target_weights"] = target_weights;
  result["target_branch"] = target_branch;
  result["num_branches"] = static_cast<std::int64_t>(input.branches.size());
  result["naive_tokens"] = packer->naive_tokens();
  result["packed_tokens"] = packer->packed_tokens();
  return result;
}

}  // namespace

void register_packer(py::module_& m) {
  m.def("pack", &pack, py::arg("sequences"), py::arg("max_tokens"), py::arg("share_prefixes"),
        py::arg("vocab_size"), py::arg("pad_id"),
        "Pack TreeSequences into rows; returns a dict of numpy arrays and token counts "
        "(see swirl.packing.pack). vocab_size < 0 means no upper bound.");
  m.attr("MAX_ROW_TOKENS") = kMaxRowTokens;
}

}  // namespace swirl
