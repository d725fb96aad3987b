// Prefix-shared packing: per-sequence tries, first-fit-decreasing rows, preorder layout.
#include "packer.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <utility>

namespace swirl {

// A trie over int32 tokens. Node 0 is the root. Optionally nodes 1..n form an implicit chain
// (node k holds chain[k - 1]; its chain child is k + 1) that costs nothing to insert: a sequence's
// own context. Explicit children keep creation order (a linked list with O(1) append); lookups
// scan the list while a node has few children and switch to a hash map beyond that, so a node
// with thousands of branches costs O(1) per lookup, not O(n).
class Trie {
 public:
  static constexpr std::int32_t kNone = -1;

  Trie() { reset(); }

  // Empties the trie; nodes 1..chain_length become the implicit chain. O(chain nodes touched).
  void reset(const std::int32_t* chain = nullptr, std::int64_t chain_length = 0) {
    for (const std::int32_t c : touched_) chain_slot_[c] = kNone;
    touched_.clear();
    chain_heads_.clear();
    nodes_.clear();
    if (!hashed_.empty()) hashed_.clear();
    chain_ = chain;
    chain_length_ = static_cast<std::int32_t>(chain_length);
    if (chain_slot_.size() < static_cast<std::size_t>(chain_length) + 1)
      chain_slot_.resize(static_cast<std::size_t>(chain_length) + 1, kNone);
  }

  // Number of nodes, the root excluded.
  std::int32_t size() const { return chain_length_ + static_cast<std::int32_t>(nodes_.size()); }

  // Appends a new explicit child of `parent` (no lookup: the caller knows it is absent, or does
  // not share). Returns its id.
  std::int32_t add(std::int32_t parent, std::int32_t token) {
    const std::int32_t node = size() + 1;
    Links& p = links(parent);  // before the push_back, which may move nodes_
    const std::int32_t last = p.last_child;
    const std::int32_t fanout = ++p.fanout;
    if (last == kNone)
      p.first_child = node;
    p.last_child = node;
    nodes_.push_back(Node{token, parent, kNone, Links{}});
    if (last != kNone) explicit_node(last).next_sibling = node;
    if (fanout == kScanFanout + 1) {
      for (std::int32_t c = links(parent).first_child; c != kNone; c = next_sibling(c))
        hashed_.emplace(key(parent, this->token(c)), c);
    } else if (fanout > kScanFanout) {
      hashed_.emplace(key(parent, token), node);
    }
    return node;
  }

  // The child of `parent` holding `token`, or kNone.
  std::int32_t find(std::int32_t parent, std::int32_t token) const {
    if (parent < chain_length_ && chain_[parent] == token) return parent + 1;
    const Links* p = find_links(parent);
    if (p == nullptr) return kNone;
    if (p->fanout > kScanFanout) {
      const auto it = hashed_.find(key(parent, token));
      return it == hashed_.end() ? kNone : it->second;
    }
    for (std::int32_t c = p->first_child; c != kNone; c = next_sibling(c))
      if (this->token(c) == token) return c;
    return kNone;
  }

  std::int32_t find_or_add(std::int32_t parent, std::int32_t token) {
    const std::int32_t found = find(parent, token);
    return found == kNone ? add(parent, token) : found;
  }

  // Token and parent of an explicit node (ids above the chain).
  std::int32_t token(std::int32_t node) const { return explicit_node(node).token; }
  std::int32_t parent(std::int32_t node) const { return explicit_node(node).parent; }
  // First explicit child (kNone if none) and next explicit sibling, in creation order.
  std::int32_t first_child(std::int32_t node) const {
    const Links* p = find_links(node);
    return p == nullptr ? kNone : p->first_child;
  }
  std::int32_t next_sibling(std::int32_t node) const { return explicit_node(node).next_sibling; }

 private:
  static constexpr std::int32_t kScanFanout = 16;
  static std::uint64_t key(std::int32_t parent, std::int32_t token) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(parent)) << 32) |
           static_cast<std::uint32_t>(token);
  }

  struct Links {
    std::int32_t first_child = kNone, last_child = kNone, fanout = 0;
  };
  struct Node {
    std::int32_t token, parent, next_sibling;
    Links links;
  };

  bool is_chain(std::int32_t node) const { return node <= chain_length_; }
  Node& explicit_node(std::int32_t node) { return nodes_[node - chain_length_ - 1]; }
  const Node& explicit_node(std::int32_t node) const { return nodes_[node - chain_length_ - 1]; }

  // Children links of a node; the root and chain nodes get theirs on first use.
  Links& links(std::int32_t node) {
    if (!is_chain(node)) return explicit_node(node).links;
    if (chain_slot_[node] == kNone) {
      chain_slot_[node] = static_cast<std::int32_t>(chain_heads_.size());
      chain_heads_.emplace_back();
      touched_.push_back(node);
    }
    return chain_heads_[chain_slot_[node]];
  }
  const Links* find_links(std::int32_t node) const {
    if (!is_chain(node)) return &explicit_node(node).links;
    return chain_slot_[node] == kNone ? nullptr : &chain_heads_[chain_slot_[node]];
  }

  const std::int32_t* chain_ = nullptr;
  std::int32_t chain_length_ = 0;
  std::vector<Node> nodes_;                // explicit nodes, id = chain_length_ + 1 + index
  std::vector<std::int32_t> chain_slot_;   // chain node -> index into chain_heads_, or kNone
  std::vector<Links> chain_heads_;
  std::vector<std::int32_t> touched_;      // chain nodes with a slot, reset lazily
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
  scratch.reset(seq.context.data, trunk);  // context token k is node k + 1
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
  for (auto k = static_cast<std::int32_t>(trunk) + 1; k <= scratch.size(); ++k) {
    added_token_.push_back(scratch.token(k));
    added_parent_.push_back(scratch.parent(k));
  }
  seq_begin_.push_back(static_cast<std::int64_t>(added_token_.size()));
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
  const auto size_of = [&](std::size_t i) {
    return trunk_length_[i] + seq_begin_[i + 1] - seq_begin_[i];
  };
  std::vector<std::size_t> order;
  for (std::size_t i = 0; i < n; ++i)
    if (input_.sequences[i].num_branches > 0) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return size_of(a) > size_of(b); });

  const std::int64_t common = common_prefix();
  const bool share = options_.share_prefixes;
  FirstFit free_space(std::max<std::size_t>(order.size(), 1));
  std::vector<Trie> tries;
  std::vector<std::int32_t> row_of_local;  // the row node of each local node of one sequence
  seq_row_.assign(n, -1);
  for (const std::size_t i : order) {
    const std::int64_t size = size_of(i);
    std::int64_t r = free_space.find(size - common);
    if (r < 0) {
      r = static_cast<std::int64_t>(tries.size());
      tries.emplace_back();
    }
    Trie& row = tries[r];
    const std::int32_t before = row.size();
    // Children of a node created by this very merge are new too: no lookup.
    const auto place = [&](std::int32_t parent, std::int32_t token) {
      return share && parent <= before ? row.find_or_add(parent, token) : row.add(parent, token);
    };
    const std::int64_t trunk = trunk_length_[i];
    const std::int32_t* context = input_.sequences[i].context.data;
    row_of_local.resize(static_cast<std::size_t>(size) + 1);
    row_of_local[0] = 0;
    // A non-empty row starts with its first sequence's trunk, and every context starts with the
    // common prefix: those nodes are 1..common, no lookup needed.
    const std::int64_t known = before > 0 ? common : 0;
    for (std::int64_t k = 1; k <= known; ++k) row_of_local[k] = static_cast<std::int32_t>(k);
    for (std::int64_t k = known + 1; k <= trunk; ++k)
      row_of_local[k] = place(row_of_local[k - 1], context[k - 1]);
    for (std::int64_t q = seq_begin_[i]; q < seq_begin_[i + 1]; ++q)
      row_of_local[trunk + 1 + q - seq_begin_[i]] =
          place(row_of_local[added_parent_[q]], added_token_[q]);

    // Each branch token's predictor: the previous token's node, or for the first one the
    // attachment node. Backwards, so branch_node_ can be overwritten in place.
    const SequenceInput& seq = input_.sequences[i];
    for (std::int64_t b = seq.first_branch; b < seq.first_branch + seq.num_branches; ++b) {
      const std::int64_t first = branch_begin_[b];
      for (std::int64_t k = branch_begin_[b + 1] - 1; k >= first; --k) {
        const std::int64_t predictor = k == first ? input_.branches[b].offset : branch_node_[k - 1];
        branch_node_[k] = predictor == 0 ? -1 : row_of_local[predictor];
      }
    }
    seq_row_[i] = static_cast<std::int32_t>(r);
    free_space.set(static_cast<std::size_t>(r), options_.max_tokens - row.size());
  }
  std::vector<std::int32_t>().swap(added_token_);
  std::vector<std::int32_t>().swap(added_parent_);

  // Preorder layout of every row, computed in creation order (a parent precedes its children).
  rows_.resize(tries.size());
  for (std::size_t r = 0; r < tries.size(); ++r) {
    const Trie& trie = tries[r];
    Row& row = rows_[r];
    const std::int32_t size = trie.size();
    row.token.resize(size + 1);
    row.parent.resize(size + 1);
    row.pos.resize(size + 1);
    row.subtree_size.assign(size + 1, 1);
    row.depth.resize(size + 1);
    for (std::int32_t k = 1; k <= size; ++k) {
      row.token[k] = trie.token(k);
      row.parent[k] = trie.parent(k);
    }
    for (std::int32_t k = size; k >= 1; --k) row.subtree_size[row.parent[k]] += row.subtree_size[k];
    row.pos[0] = -1;
    row.depth[0] = -1;
    for (std::int32_t p = 0; p <= size; ++p) {
      if (p > 0) row.depth[p] = row.depth[row.parent[p]] + 1;
      std::int32_t next = row.pos[p] + 1;
      for (std::int32_t c = trie.first_child(p); c != Trie::kNone; c = trie.next_sibling(c)) {
        row.pos[c] = next;
        next += row.subtree_size[c];
      }
    }
    tries[r] = Trie();
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
    for (std::int64_t b = seq.first_branch; b < seq.first_branch + seq.num_branches; ++b) {
      const BranchInput& branch = input_.branches[b];
      const auto weight = static_cast<float>(branch.weight);
      const std::int64_t first = branch_begin_[b];
      for (std::int64_t k = first; k < branch_begin_[b + 1]; ++k) {
        const std::int32_t predictor = branch_node_[k];
        if (predictor < 0) continue;
        out.target_rows[m] = row_base + row.pos[predictor];
        out.target_ids[m] = branch.tokens.data[k - first];
        out.target_weights[m] = weight;
        out.target_branch[m] = static_cast<std::int32_t>(b);
        ++m;
      }
    }
  }
}

}  // namespace swirl
