#include "tags.hpp"

#include <cstring>

namespace swirl {

const char* const kTags[kNumTags] = {"<search_query>",  "<math_exp>",  "<answer>",
                                     "</search_query>", "</math_exp>", "</answer>"};
const Py_ssize_t kTagLengths[kNumTags] = {14, 10, 8, 15, 11, 9};

bool is_python_space(Py_UCS4 c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (c < 0x85) return false;
  switch (c) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

namespace {

// Which tag (if any) starts at s[p]; the caller guarantees s[p] == '<'.
template <typename CharT>
int tag_at(const CharT* s, Py_ssize_t n, Py_ssize_t p) {
  const Py_ssize_t left = n - p;
  // The second character tells the candidates apart: '/' (closing), 's', 'm' or 'a'.
  if (left < 2) return kNoTag;
  int first;
  switch (s[p + 1]) {
    case '/':
      if (left < 3) return kNoTag;
      switch (s[p + 2]) {
        case 's':
          first = 3;
          break;
        case 'm':
          first = 4;
          break;
        case 'a':
          first = 5;
          break;
        default:
          return kNoTag;
      }
      break;
    case 's':
      first = 0;
      break;
    case 'm':
      first = 1;
      break;
    case 'a':
      first = 2;
      break;
    default:
      return kNoTag;
  }
  const Py_ssize_t len = kTagLengths[first];
  if (left < len) return kNoTag;
  const char* tag = kTags[first];
  for (Py_ssize_t k = 2; k < len; ++k) {
    if (static_cast<Py_UCS4>(s[p + k]) != static_cast<Py_UCS4>(static_cast<unsigned char>(tag[k])))
      return kNoTag;
  }
  return first;
}

template <typename CharT>
Py_ssize_t find_lt(const CharT* s, Py_ssize_t from, Py_ssize_t n) {
  if constexpr (sizeof(CharT) == 1) {
    const void* hit = std::memchr(s + from, '<', static_cast<size_t>(n - from));
    return hit ? static_cast<const CharT*>(hit) - s : -1;
  } else {
    for (Py_ssize_t i = from; i < n; ++i)
      if (s[i] == '<') return i;
    return -1;
  }
}

// First action tag starting at or after `from`; returns its position and sets *tag, else -1.
template <typename CharT>
Py_ssize_t find_tag(const CharT* s, Py_ssize_t n, Py_ssize_t from, int* tag) {
  while (from < n) {
    const Py_ssize_t p = find_lt(s, from, n);
    if (p < 0) return -1;
    const int t = tag_at(s, n, p);
    if (t != kNoTag) {
      *tag = t;
      return p;
    }
    from = p + 1;
  }
  return -1;
}

// Position of the first occurrence of tag `t` at or after `from`, else -1.
template <typename CharT>
Py_ssize_t find_specific_tag(const CharT* s, Py_ssize_t n, Py_ssize_t from, int t) {
  int found;
  while (true) {
    const Py_ssize_t p = find_tag(s, n, from, &found);
    if (p < 0 || found == t) return p;
    from = p + 1;
  }
}

template <typename CharT>
void strip(const CharT* s, Py_ssize_t* begin, Py_ssize_t* end) {
  while (*begin < *end && is_python_space(s[*begin])) ++*begin;
  while (*end > *begin && is_python_space(s[*end - 1])) --*end;
}

template <typename CharT>
TagScan scan(const CharT* s, Py_ssize_t n) {
  TagScan r;
  int tag = kNoTag;
  const Py_ssize_t p = find_tag(s, n, 0, &tag);
  if (p < 0) {
    r.thought_end = n;
    strip(s, &r.thought_begin, &r.thought_end);
    return r;
  }
  r.tag = tag;
  r.start = p;
  r.thought_end = p;
  strip(s, &r.thought_begin, &r.thought_end);
  r.kind = ActionKind::kInvalid;
  if (tag >= 3) {
    r.error = TagError::kStray;
    r.end = p + kTagLengths[tag];
    return r;
  }
  const int close = tag + 3;
  const Py_ssize_t open_end = p + kTagLengths[tag];
  int inner = kNoTag;
  const Py_ssize_t q = find_tag(s, n, open_end, &inner);
  if (q >= 0 && inner == close) {
    r.end = q + kTagLengths[close];
    r.payload_begin = open_end;
    r.payload_end = q;
    strip(s, &r.payload_begin, &r.payload_end);
    if (r.payload_begin == r.payload_end) {
      r.error = TagError::kEmpty;
      r.payload_begin = r.payload_end = 0;
      return r;
    }
    r.kind = static_cast<ActionKind>(tag + 1);
    return r;
  }
  // Either no tag follows (unclosed) or another tag comes before the matching close.
  const Py_ssize_t matching = q < 0 ? -1 : find_specific_tag(s, n, q + 1, close);
  if (matching < 0) {
    r.error = TagError::kUnclosed;
    r.end = n;
  } else {
    r.error = TagError::kNested;
    r.nested_tag = inner;
    r.end = matching + kTagLengths[close];
  }
  return r;
}

template <typename CharT>
Py_ssize_t stop(const CharT* s, Py_ssize_t n, Py_ssize_t from) {
  int tag = kNoTag;
  while (true) {
    const Py_ssize_t p = find_tag(s, n, from, &tag);
    if (p < 0) return -1;
    if (tag >= 3) return p + kTagLengths[tag];
    from = p + 1;
  }
}

}  // namespace

TagScan scan_action(PyObject* text) {
  const Py_ssize_t n = PyUnicode_GET_LENGTH(text);
  const void* data = PyUnicode_DATA(text);
  switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
      return scan(static_cast<const Py_UCS1*>(data), n);
    case PyUnicode_2BYTE_KIND:
      return scan(static_cast<const Py_UCS2*>(data), n);
    default:
      return scan(static_cast<const Py_UCS4*>(data), n);
  }
}

Py_ssize_t find_action_stop(PyObject* text, Py_ssize_t search_from) {
  const Py_ssize_t n = PyUnicode_GET_LENGTH(text);
  if (search_from < 0) search_from = 0;
  if (search_from >= n) return -1;
  const void* data = PyUnicode_DATA(text);
  switch (PyUnicode_KIND(text)) {
    case PyUnicode_1BYTE_KIND:
      return stop(static_cast<const Py_UCS1*>(data), n, search_from);
    case PyUnicode_2BYTE_KIND:
      return stop(static_cast<const Py_UCS2*>(data), n, search_from);
    default:
      return stop(static_cast<const Py_UCS4*>(data), n, search_from);
  }
}

}  // namespace swirl
