// Python bindings of the packer: reads TreeSequence/Branch objects (duck-typed attributes) and
// their numpy int32 arrays through the buffer protocol without copying, packs with the GIL
// released, and returns freshly allocated numpy arrays in a dict.
#include <Python.h>
#include <pybind11/numpy.h>

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
  py::object ndarray, context, branches, offset, tokens, weight;
};

const Names& names() {
  static const Names* n = [] {
    auto* out = new Names();  // leaked on purpose: must outlive interpreter-exit destructors
    out->ndarray = py::module_::import("numpy").attr("ndarray");
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

bool is_native_int32(const Py_buffer& view) {
  if (view.itemsize != 4 || view.format == nullptr) return false;
  const char* f = view.format;
  if (*f == '@' || *f == '=') ++f;
#if PY_LITTLE_ENDIAN
  else if (*f == '<')
    ++f;
#else
  else if (*f == '>')
    ++f;
#endif
  return std::strcmp(f, "i") == 0 || (sizeof(long) == 4 && std::strcmp(f, "l") == 0);
}

// Keeps the arrays' buffers (or contiguous copies of strided ones) alive while packing.
class TokenBuffers {
 public:
  TokenBuffers() = default;
  TokenBuffers(const TokenBuffers&) = delete;
  TokenBuffers& operator=(const TokenBuffers&) = delete;
  ~TokenBuffers() {
    for (Py_buffer& view : views_) PyBuffer_Release(&view);
  }

  // `name` is built only on error.
  template <typename Name>
  TokenSpan read(py::handle array, Name&& name) {
    const auto fail = [&] { return py::value_error(name() + " must be a 1-D numpy int32 array"); };
    if (!PyObject_TypeCheck(array.ptr(), reinterpret_cast<PyTypeObject*>(names().ndarray.ptr())))
      throw fail();
    Py_buffer view;
    if (PyObject_GetBuffer(array.ptr(), &view, PyBUF_RECORDS_RO) != 0) {
      PyErr_Clear();
      throw fail();
    }
    if (view.ndim != 1 || !is_native_int32(view)) {
      PyBuffer_Release(&view);
      throw fail();
    }
    const auto size = static_cast<std::int64_t>(view.shape[0]);
    if (size == 0 || view.strides[0] == 4) {
      views_.push_back(view);
      return {static_cast<const std::int32_t*>(view.buf), size};
    }
    // Strided (possibly unaligned) view: copy it.
    std::vector<std::int32_t>& copy = copies_.emplace_back(static_cast<std::size_t>(size));
    for (std::int64_t k = 0; k < size; ++k)
      std::memcpy(&copy[k], static_cast<const char*>(view.buf) + k * view.strides[0], 4);
    PyBuffer_Release(&view);
    return {copy.data(), size};
  }

 private:
  std::deque<Py_buffer> views_;
  std::deque<std::vector<std::int32_t>> copies_;
};

std::string sequence_name(std::size_t i) { return "sequences[" + std::to_string(i) + "]"; }

std::string branch_name(std::size_t i, std::size_t j) {
  return sequence_name(i) + ".branches[" + std::to_string(j) + "]";
}

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

  TokenBuffers buffers;
  PackInput input;
  input.sequences.resize(n);
  // Type checks, sequence by sequence: context, branches, then each branch's fields.
  for (std::size_t i = 0; i < n; ++i) {
    py::handle seq = PyTuple_GET_ITEM(seqs.ptr(), i);
    SequenceInput& s = input.sequences[i];
    s.context =
        buffers.read(get_attr(seq, names().context), [&] { return sequence_name(i) + ".context"; });
    const py::tuple branches =
        snapshot(get_attr(seq, names().branches), sequence_name(i) + ".branches");
    const std::size_t count = branches.size();
    s.first_branch = static_cast<std::int64_t>(input.branches.size());
    s.num_branches = static_cast<std::int64_t>(count);
    for (std::size_t j = 0; j < count; ++j) {
      py::handle branch = PyTuple_GET_ITEM(branches.ptr(), j);
      BranchInput b;
      b.offset = read_offset(branch, i, j);
      b.tokens = buffers.read(get_attr(branch, names().tokens),
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
