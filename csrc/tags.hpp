// Tag scanning for one model turn: which action (if any) it contains and where.
//
// Works directly on CPython's internal string storage (1, 2 or 4 bytes per code point), so all
// offsets are Python string indices and no UTF-8 round trip is needed.
#pragma once

#include <Python.h>

#include <cstdint>

namespace swirl {

enum class ActionKind : std::uint8_t { kNone = 0, kSearch, kMath, kAnswer, kInvalid };
enum class TagError : std::uint8_t { kOk = 0, kUnclosed, kEmpty, kNested, kStray };

// Index into kTags: opening tags 0..2 (search, math, answer), closing tags 3..5 in the same order.
constexpr int kNumTags = 6;
constexpr int kNoTag = -1;
extern const char* const kTags[kNumTags];
extern const Py_ssize_t kTagLengths[kNumTags];
constexpr Py_ssize_t kMaxTagLength = 15;  // "</search_query>"

// Result of scanning one turn; ranges are half-open [begin, end) in code points.
struct TagScan {
  ActionKind kind = ActionKind::kNone;
  TagError error = TagError::kOk;
  int tag = kNoTag;         // the deciding tag (opening tag, or the stray closing tag)
  int nested_tag = kNoTag;  // for kNested: the offending tag inside the payload
  Py_ssize_t start = -1;    // start of the tag element, -1 for kNone
  Py_ssize_t end = -1;      // just past the closing tag (text length when unclosed), -1 for kNone
  Py_ssize_t payload_begin = 0, payload_end = 0;  // stripped payload (valid actions only)
  Py_ssize_t thought_begin = 0, thought_end = 0;  // stripped text before the tag
};

// True for exactly the code points that Python's str.isspace() accepts.
bool is_python_space(Py_UCS4 c);

// Scans a ready (canonical) str object. Never reads outside it.
TagScan scan_action(PyObject* text);

// Index just past the first closing action tag that starts at or after `search_from`, else -1.
Py_ssize_t find_action_stop(PyObject* text, Py_ssize_t search_from);

}  // namespace swirl
