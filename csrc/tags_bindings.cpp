// Python bindings of the tag scanner: builds Action objects through a caller-supplied factory
// (the msgspec Struct swirl.schema.Action) with one vectorcall per turn.
#include <Python.h>
#include <pybind11/numpy.h>

#include <array>
#include <string>

#include "bindings.hpp"
#include "tags.hpp"

namespace py = pybind11;

namespace swirl {
namespace {

// Interned once: the kind names and the empty string are shared by every Action.
struct Names {
  std::array<py::object, 5> kinds;
  py::object empty;
};

const Names& names() {
  static const Names* n = [] {
    auto* out = new Names();  // leaked on purpose: must outlive interpreter-exit destructors
    const char* kinds[5] = {"none", "search", "math", "answer", "invalid"};
    for (int i = 0; i < 5; ++i)
      out->kinds[i] = py::reinterpret_steal<py::object>(PyUnicode_InternFromString(kinds[i]));
    out->empty = py::reinterpret_steal<py::object>(PyUnicode_InternFromString(""));
    return out;
  }();
  return *n;
}

py::object substring(PyObject* text, Py_ssize_t begin, Py_ssize_t end) {
  if (begin >= end) return names().empty;
  return py::reinterpret_steal<py::object>(PyUnicode_Substring(text, begin, end));
}

py::object error_message(const TagScan& s) {
  const std::string tag = s.tag == kNoTag ? "" : kTags[s.tag];
  switch (s.error) {
    case TagError::kOk:
      return py::none();
    case TagError::kUnclosed:
      return py::str("unclosed " + tag);
    case TagError::kEmpty:
      return py::str("empty " + tag);
    case TagError::kStray:
      return py::str("stray closing tag " + tag);
    case TagError::kNested:
      return py::str("nested " + std::string(kTags[s.nested_tag]) + " inside " + tag);
  }
  return py::none();
}

PyObject* checked_str(py::handle text, const char* what) {
  PyObject* obj = text.ptr();
  if (!PyUnicode_Check(obj)) throw py::type_error(std::string(what) + " must be str");
#if PY_VERSION_HEX < 0x030C0000
  if (PyUnicode_READY(obj) < 0) throw py::error_already_set();
#endif
  return obj;
}

py::object build_action(PyObject* text, py::handle factory) {
  const TagScan s = scan_action(text);
  const bool valid = s.kind != ActionKind::kNone && s.kind != ActionKind::kInvalid;
  py::object kind = names().kinds[static_cast<int>(s.kind)];
  py::object payload = valid ? substring(text, s.payload_begin, s.payload_end) : names().empty;
  py::object thought = substring(text, s.thought_begin, s.thought_end);
  py::object start = py::int_(s.start);
  py::object end = py::int_(s.end);
  py::object error = error_message(s);
  PyObject* args[6] = {kind.ptr(),  payload.ptr(), thought.ptr(),
                       start.ptr(), end.ptr(),     error.ptr()};
  PyObject* out = PyObject_Vectorcall(factory.ptr(), args, 6, nullptr);
  if (!out) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(out);
}

// One row of scan_actions(): the columns of swirl.tags.SCAN_COLUMNS.
constexpr int kScanColumns = 10;

void scan_row(const TagScan& s, std::int64_t* row) {
  const bool valid = s.kind != ActionKind::kNone && s.kind != ActionKind::kInvalid;
  row[0] = static_cast<std::int64_t>(s.kind);
  row[1] = static_cast<std::int64_t>(s.error);
  row[2] = s.tag;
  row[3] = s.nested_tag;
  row[4] = s.start;
  row[5] = s.end;
  row[6] = valid ? s.payload_begin : 0;
  row[7] = valid ? s.payload_end : 0;
  row[8] = s.thought_begin;
  row[9] = s.thought_end;
}

}  // namespace

void register_tags(py::module_& m) {
  m.def(
      "parse_action",
      [](py::handle text, py::handle factory) {
        return build_action(checked_str(text, "text"), factory);
      },
      py::arg("text"), py::arg("factory"),
      "Scan one turn; returns factory(kind, payload, thought, start, end, error).");
  m.def(
      "parse_actions",
      [](py::handle texts, py::handle factory) {
        py::list out;
        if (PyList_Check(texts.ptr())) {
          const Py_ssize_t n = PyList_GET_SIZE(texts.ptr());
          out = py::list(n);
          for (Py_ssize_t i = 0; i < n; ++i) {
            py::handle item = PyList_GET_ITEM(texts.ptr(), i);
            PyList_SET_ITEM(out.ptr(), i,
                            build_action(checked_str(item, "texts[i]"), factory).release().ptr());
          }
          return out;
        }
        for (py::handle item : py::iter(texts))
          out.append(build_action(checked_str(item, "texts[i]"), factory));
        return out;
      },
      py::arg("texts"), py::arg("factory"), "parse_action over a list (or iterable) of turns.");
  m.def(
      "scan_actions",
      [](const py::list& texts) {
        const Py_ssize_t n = static_cast<Py_ssize_t>(texts.size());
        py::array_t<std::int64_t> out({static_cast<py::ssize_t>(n), py::ssize_t{kScanColumns}});
        std::int64_t* rows = out.mutable_data();
        for (Py_ssize_t i = 0; i < n; ++i)
          scan_row(scan_action(checked_str(texts[i], "texts[i]")), rows + i * kScanColumns);
        return out;
      },
      py::arg("texts"), "Scan a list of turns into an [N, 10] int64 array (no per-turn objects).");
  m.def(
      "find_action_stop",
      [](py::handle text, Py_ssize_t search_from) {
        return find_action_stop(checked_str(text, "text"), search_from);
      },
      py::arg("text"), py::arg("search_from") = 0,
      "Index just past the first closing action tag starting at or after search_from, else -1.");
  m.def(
      "is_python_space", [](std::uint32_t c) { return is_python_space(c); }, py::arg("codepoint"),
      "Whitespace test used by strip(); equals str.isspace() for one code point.");
  m.attr("MAX_TAG_LENGTH") = kMaxTagLength;
}

}  // namespace swirl
