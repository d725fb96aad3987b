// Prefix-shared packing: per-sequence tries, first-fit-decreasing rows, preorder layout.
#include "packer.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <utility>

namespace swirl {

// A trie over int32 tokens. Node 0 is the root; a node's children keep creation order (a linked
// list with O(1) append). Lookups scan the list while a node has few children and switch to a
// hash map beyond that, so a node with thousands of branches costs O(1) per lookup, not O(n).
class Trie {
 public:
  static constexpr std::int32_t kNone = -1;

  Trie() { clear(); }

  void clear() {
    token_.assign(1, -1);
    parent_.assign(1, kNone);
    first_child_.assign(1, kNone);
    last_child_.assign(1, kNone);
    next_sibling_.assign(1, kNone);
    fanout_.assign(1, 0);
    if (!hashed_.empty()) hashed_.clear();
  }

  // Number of nodes, the root excluded.
  std::int32_t size() const { return static_cast<std::int32_t>(token_.size()) - 1; }

  // Appends a new child of `parent` (no lookup: the caller knows it is absent, or does not
  // share). Returns its id.
  std::int32_t add(std::int32_t parent, std::int32_t token) {
    const auto node = static_cast<std::int32_t>(token_.size());
    token_.push_back(token);
    parent_.push_back(parent);
    first_child_.push_back(kNone);
    last_child_.push_back(kNone);
    next_sibling_.push_back(kNone);
    fanout_.push_back(0);
    if (last_child_[parent] == kNone)
      first_child_[parent] = node;
    else
      next_sibling_[last_child_[parent]] = node;
    last_child_[parent] = node;
    const std::int32_t fanout = ++fanout_[parent];
    if (fanout == kScanFanout + 1) {
      for (std::int32_t c = first_child_[parent]; c != kNone; c = next_sibling_[c])
        hashed_.emplace(key(parent, token_[c]), c);
    } else if (fanout > kScanFanout) {
      hashed_.emplace(key(parent, token), node);
    }
    return node;
  }

  // The child of `parent` holding `token`, or kNone.
  std::int32_t find(std::int32_t parent, std::int32_t token) const {
    if (fanout_[parent] > kScanFanout) {
      const auto it = hashed_.find(key(parent, token));
      return it == hashed_.end() ? kNone : it->second;
    }
    for (std::int32_t c = first_child_[parent]; c != kNone; c = next_sibling_[c])
      if (token_[c] == token) return c;
    return kNone;
  }

  std::int32_t find_or_add(std::int32_t parent, std::int32_t token) {
    const std::int32_t found = find(parent, token);
    return found == kNone ? add(parent, token) : found;
  }

  std::int32_t token(std::int32_t node) const { return token_[node]; }
  std::int32_t parent(std::int32_t node) const { return parent_[node]; }
  std::int32_t first_child(std::int32_t node) const { return first_child_[node]; }
  std::int32_t next_sibling(std::int32_t node) const { return next_sibling_[node]; }

  // Hands over the token and parent arrays (creation order, index 0 = root) and empties the trie.
  void release(std::vector<std::int32_t>& token, std::vector<std::int32_t>& parent) {
    token.swap(token_);
    parent.swap(parent_);
    *this = Trie();
  }

 private:
  static constexpr std::int32_t kScanFanout = 16;
  static std::uint64_t key(std::int32_t parent, std::int32_t token) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(parent)) << 32) |
           static_cast<std::uint32_t>(token);
  }

  std::vector<std::int32_t> token_, parent_, first_child_, last_child_, next_sibling_, fanout_;
  std::unordered_map<std::uint64_t, std::int32_t> hashed_;
};

namespace {

// Leftmost slot whose value is at least w, in O(log n): the first-fit query of bin packing.
class FirstFit {
 public:
  explicit FirstFit(std::size_t slots) {
    while (leaves_ < slots) leaves_ <<= 1;
    tree_.assign(2 * leaves_, -1);
  }

  void set(std::size_t slot, std::int64_t value) {
    std::size_t i = slot + leaves_;
    tree_[i] = value;
    for (i >>= 1; i > 0; i >>= 1) tree_[i] = std::max(tree_[2 * i], tree_[2 * i + 1]);
  }

  // -1 when no slot holds at least w.
  std::int64_t find(std::int64_t w) const {
    if (tree_[1] < w) return -1;
    std::size_t i = 1;
    while (i < leaves_) i = tree_[2 * i] >= w ? 2 * i : 2 * i + 1;
    return static_cast<std::int64_t>(i - leaves_);
  }

 private:
  std::size_t leaves_ = 1;
  std::vector<std::int64_t> tree_;
};

std::string sequence_name(std::size_t i) { return "sequences[" + std::to_string(i) + "]"; }

std::string branch_name(std::size_t i, std::int64_t j) {
  return sequence_name(i) + ".branches[" + std::to_string(j) + "]";
}

// Rejects negative ids and, with a vocabulary, ids >= vocab_size. `name` is built only on error.
template <typename Name>
void check_token_range(TokenSpan tokens, std::int64_t vocab_size, Name&& name) {
  // One unsigned compare catches negatives too; the loop vectorises.
  const std::uint64_t limit =
      vocab_size >= 0 ? static_cast<std::uint64_t>(vocab_size) : std::uint64_t{1} << 31;
  bool bad = false;
  for (std::int64_t k = 0; k < tokens.size; ++k)
    bad |= static_cast<std::uint64_t>(static_cast<std::uint32_t>(tokens.data[k])) >= limit;
  if (!bad) return;
  for (std::int64_t k = 0; k < tokens.size; ++k) {
    const std::int32_t t = tokens.data[k];
    if (t < 0 || (vocab_size >= 0 && t >= vocab_size)) {
      std::string where = name() + "[" + std::to_string(k) + "] = " + std::to_string(t);
      if (vocab_size >= 0)
        throw PackError(where + " is outside the vocabulary [0, " + std::to_string(vocab_size) +
                        ")");
      throw PackError(where + " is negative");
    }
  }
}

void check_options(const PackOptions& o) {
  if (o.max_tokens < 1 || o.max_tokens > kMaxRowTokens)
    throw PackError("max_tokens must be in [1, " + std::to_string(kMaxRowTokens) + "], got " +
                    std::to_string(o.max_tokens));
  if (o.vocab_size == 0 || o.vocab_size < -1)
    throw PackError("vocab_size must be positive, got " + std::to_string(o.vocab_size));
  const std::int64_t pad_limit = o.vocab_size >= 0 ? o.vocab_size : std::int64_t{1} << 31;
  if (o.pad_id < 0 || o.pad_id >= pad_limit)
    throw PackError("pad_id must be in [0, " + std::to_string(pad_limit) + "), got " +
                    std::to_string(o.pad_id));
}

}  // namespace

Packer::Packer(const PackInput& input, const PackOptions& options)
    : input_(input), options_(options) {
  check_options(options_);
  const std::size_t n = input_.sequences.size();
  seq_begin_.reserve(n + 1);
  seq_begin_.push_back(0);
  trunk_length_.assign(n, 0);
  branch_begin_.reserve(input_.branches.size() + 1);
  branch_begin_.push_back(0);
  Trie scratch;
  for (std::size_t i = 0; i < n; ++i) build_sequence_trie(i, scratch);
  place_sequences();
}

// Validates sequence `index`, builds its own trie in `scratch` and appends it to the flat arrays.
void Packer::build_sequence_trie(std::size_t index, Trie& scratch) {
  const SequenceInput& seq = input_.sequences[index];
  const std::int64_t vocab = options_.vocab_size;
  check_token_range(seq.context, vocab, [&] { return sequence_name(index) + ".context"; });
  std::int64_t trunk = 0;
  for (std::int64_t j = 0; j < seq.num_branches; ++j) {
    const BranchInput& b = input_.branches[seq.first_branch + j];
    if (b.tokens.size == 0) throw PackError(branch_name(index, j) + ".tokens is empty");
    if (b.offset < 0 || b.offset > seq.context.size)
      throw PackError(branch_name(index, j) + ".offset " + std::to_string(b.offset) +
                      " is outside [0, " + std::to_string(seq.context.size) + "]");
    check_token_range(b.tokens, vocab, [&] { return branch_name(index, j) + ".tokens"; });
    if (!std::isfinite(static_cast<float>(b.weight)))
      throw PackError(branch_name(index, j) + ".weight is not finite in float32");
    trunk = std::max(trunk, b.offset);
  }

  const std::int64_t max_tokens = options_.max_tokens;
  const auto too_long = [&] {
    return PackError(sequence_name(index) +
                     " does not fit in a row of max_tokens=" + std::to_string(max_tokens) +
                     " (its context up to the last branch plus its branches)");
  };
  if (trunk > max_tokens) throw too_long();
  scratch.clear();
  // The trunk goes in first, into an empty trie: context token k becomes node k + 1.
  for (std::int64_t k = 0; k < trunk; ++k)
    scratch.add(static_cast<std::int32_t>(k), seq.context.data[k]);
  for (std::int64_t j = 0; j < seq.num_branches; ++j) {
    const BranchInput& b = input_.branches[seq.first_branch + j];
    auto node = static_cast<std::int32_t>(b.offset);  // node of context[offset - 1], or the root
    bool fresh = false;  // below a node created by this branch nothing can be shared
    for (std::int64_t k = 0; k < b.tokens.size; ++k) {
      const std::int32_t t = b.tokens.data[k];
      if (!fresh) {
        const std::int32_t found = scratch.find(node, t);
        if (found != Trie::kNone) {
          node = found;
          branch_node_.push_back(node);
          continue;
        }
        fresh = true;
      }
      if (scratch.size() >= max_tokens) throw too_long();
      node = scratch.add(node, t);
      branch_node_.push_back(node);
    }
    naive_tokens_ += b.offset + b.tokens.size;
    num_targets_ += b.tokens.size - (b.offset == 0 ? 1 : 0);
    branch_begin_.push_back(static_cast<std::int64_t>(branch_node_.size()));
  }
  trunk_length_[index] = trunk;
  const std::int32_t size = scratch.size();
  for (std::int32_t k = 1; k <= size; ++k) {
    seq_token_.push_back(scratch.token(k));
    seq_parent_.push_back(scratch.parent(k));
  }
  seq_begin_.push_back(seq_begin_.back() + size);
}

// Longest context prefix shared by every sequence that has branches (0 without share_prefixes).
// Any row then already holds these tokens, so a sequence adds at most size - common to it.
std::int64_t Packer::common_prefix() const {
  if (!options_.share_prefixes) return 0;
  const SequenceInput* first = nullptr;
  std::int64_t common = 0;
  for (std::size_t i = 0; i < input_.sequences.size(); ++i) {
    const SequenceInput& seq = input_.sequences[i];
    if (seq.num_branches == 0) continue;
    if (first == nullptr) {
      first = &seq;
      common = trunk_length_[i];
      continue;
    }
    common = std::min(common, trunk_length_[i]);
    std::int64_t k = 0;
    while (k < common && seq.context.data[k] == first->context.data[k]) ++k;
    common = k;
  }
  return common;
}

void Packer::place_sequences() {
  const std::size_t n = input_.sequences.size();
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < n; ++i)
    if (seq_begin_[i + 1] > seq_begin_[i]) order.push_back(i);
  const auto size_of = [&](std::size_t i) { return seq_begin_[i + 1] - seq_begin_[i]; };
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return size_of(a) > size_of(b); });

  const std::int64_t common = common_prefix();
  const bool share = options_.share_prefixes;
  FirstFit free_space(std::max<std::size_t>(order.size(), 1));
  std::vector<Trie> tries;
  seq_row_.assign(n, -1);
  row_node_.assign(seq_token_.size(), 0);
  for (const std::size_t i : order) {
    const std::int64_t size = size_of(i);
    std::int64_t r = free_space.find(size - common);
    if (r < 0) {
      r = static_cast<std::int64_t>(tries.size());
      tries.emplace_back();
    }
    Trie& row = tries[r];
    const std::int32_t before = row.size();
    const std::int64_t base = seq_begin_[i];
    for (std::int64_t k = 0; k < size; ++k) {
      const std::int32_t local_parent = seq_parent_[base + k];
      const std::int32_t parent = local_parent == 0 ? 0 : row_node_[base + local_parent - 1];
      const std::int32_t token = seq_token_[base + k];
      // Children of a node created by this very merge are new too: no lookup.
      row_node_[base + k] =
          share && parent <= before ? row.find_or_add(parent, token) : row.add(parent, token);
    }
    seq_row_[i] = static_cast<std::int32_t>(r);
    free_space.set(static_cast<std::size_t>(r), options_.max_tokens - row.size());
  }
  // The sequence tries are merged; only branch_node_ and row_node_ are needed from here on.
  std::vector<std::int32_t>().swap(seq_token_);
  std::vector<std::int32_t>().swap(seq_parent_);

  // Preorder layout of every row, computed in creation order (a parent precedes its children).
  rows_.resize(tries.size());
  for (std::size_t r = 0; r < tries.size(); ++r) {
    Trie& trie = tries[r];
    Row& row = rows_[r];
    const std::int32_t size = trie.size();
    row.pos.assign(size + 1, 0);
    row.subtree_size.assign(size + 1, 1);
    row.depth.assign(size + 1, -1);
    for (std::int32_t k = size; k >= 1; --k)
      row.subtree_size[trie.parent(k)] += row.subtree_size[k];
    row.pos[0] = -1;
    for (std::int32_t p = 0; p <= size; ++p) {
      if (p > 0) row.depth[p] = row.depth[trie.parent(p)] + 1;
      std::int32_t next = row.pos[p] + 1;
      for (std::int32_t c = trie.first_child(p); c != Trie::kNone; c = trie.next_sibling(c)) {
        row.pos[c] = next;
        next += row.subtree_size[c];
      }
    }
    trie.release(row.token, row.parent);
    length_ = std::max<std::int64_t>(length_, size);
    packed_tokens_ += size;
  }
}

void Packer::write(const PackOutput& out) const {
  const std::int64_t length = length_;
  const auto pad_id = static_cast<std::int32_t>(options_.pad_id);
  for (std::size_t r = 0; r < rows_.size(); ++r) {
    const Row& row = rows_[r];
    const std::int64_t base = static_cast<std::int64_t>(r) * length;
    const std::int32_t size = row.size();
    for (std::int32_t k = 1; k <= size; ++k) {
      const std::int64_t q = base + row.pos[k];
      out.input_ids[q] = row.token[k];
      out.position_ids[q] = row.depth[k];
      out.parent[q] = row.parent[k] == 0 ? -1 : row.pos[row.parent[k]];
      out.subtree_end[q] = row.pos[k] + row.subtree_size[k];
    }
    for (std::int64_t pos = size; pos < length; ++pos) {
      out.input_ids[base + pos] = pad_id;
      out.position_ids[base + pos] = 0;
      out.parent[base + pos] = -1;
      out.subtree_end[base + pos] = static_cast<std::int32_t>(pos + 1);
    }
    out.row_lengths[r] = size;
  }

  // Targets in global branch order; token j is predicted by its tree parent (for j = 0 the last
  // token of the branch's prefix). A branch at offset 0 has no predictor for its first token.
  std::int64_t m = 0;
  for (std::size_t i = 0; i < input_.sequences.size(); ++i) {
    const SequenceInput& seq = input_.sequences[i];
    if (seq_row_[i] < 0) continue;
    const Row& row = rows_[seq_row_[i]];
    const std::int64_t row_base = static_cast<std::int64_t>(seq_row_[i]) * length;
    const std::int64_t node_base = seq_begin_[i] - 1;  // local ids start at 1
    for (std::int64_t j = 0; j < seq.num_branches; ++j) {
      const std::int64_t b = seq.first_branch + j;
      const auto weight = static_cast<float>(input_.branches[b].weight);
      for (std::int64_t k = branch_begin_[b]; k < branch_begin_[b + 1]; ++k) {
        const std::int32_t node = row_node_[node_base + branch_node_[k]];
        const std::int32_t parent = row.parent[node];
        if (parent == 0) continue;
        out.target_rows[m] = row_base + row.pos[parent];
        out.target_ids[m] = row.token[node];
        out.target_weights[m] = weight;
        out.target_branch[m] = static_cast<std::int32_t>(b);
        ++m;
      }
    }
  }
}

}  // namespace swirl
