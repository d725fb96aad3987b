// Prefix-shared packing: per-sequence radix trees, first-fit-decreasing rows, preorder layout.
#include "packer.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <utility>

namespace swirl {

// A radix tree over token runs. Edge 0 is the root (no tokens); every other edge is a run of
// tokens (pointing into the input arrays) whose first token's parent is the last token of its
// parent edge. Children keep creation order (a doubly linked list; splitting an edge keeps its
// old part first), so the per-token trie, and its preorder, are those of plain token-by-token
// insertion. Child lookups scan the list while an edge has few children and use a hash map
// beyond that.
class Tree {
 public:
  static constexpr std::int32_t kNone = -1;
  static constexpr std::int32_t kRoot = 0;

  // A token of the tree: token `index` of `edge`; {kRoot, -1} is the root.
  struct Place {
    std::int32_t edge = kRoot;
    std::int32_t index = -1;
  };

  Tree() { edges_.emplace_back(); }

  std::int64_t tokens() const { return tokens_; }
  Place end_of(std::int32_t edge) const { return {edge, edges_[edge].length - 1}; }

  // Follows the path t[0, n) below `at`, creating what is missing, and moves `at` to the path's
  // last token. Returns false (and leaves the tree valid) if that would exceed `limit` tokens.
  bool insert(Place& at, const std::int32_t* t, std::int64_t n, std::int64_t limit) {
    std::int32_t e = at.edge, k = at.index;
    std::int64_t i = 0;
    while (i < n) {
      const std::int32_t length = edges_[e].length;
      if (k + 1 < length) {  // inside an edge: compare the runs
        const std::int32_t* run = edges_[e].tokens + k + 1;
        const std::int64_t limit_m = std::min<std::int64_t>(length - k - 1, n - i);
        std::int64_t m = 0;
        while (m < limit_m && run[m] == t[i + m]) ++m;
        k += static_cast<std::int32_t>(m);
        i += m;
        if (i == n) break;
        if (k + 1 < length) e = split(e, edges_[e].depth + k + 1);  // diverges: branch here
      }
      const std::int32_t child = find_child(e, t[i]);
      if (child != kNone) {
        e = child;
        k = 0;
        ++i;
        continue;
      }
      if (tokens_ + (n - i) > limit) return false;
      e = add_child(e, t + i, n - i);
      k = static_cast<std::int32_t>(n - i - 1);
      i = n;
    }
    at = {e, k};
    return true;
  }

  // The edge that ends at depth d on the (existing) path `path`, splitting an edge if needed.
  // `hint` is an edge on that path at or above depth d (the root to start with).
  std::int32_t edge_ending_at(const std::int32_t* path, std::int32_t d, std::int32_t hint) {
    std::int32_t e = hint;
    while (e == kRoot || end_depth(e) < d) e = find_child(e, path[end_depth(e) + 1]);
    return end_depth(e) > d ? split(e, d + 1) : e;
  }

  // The token after `at` on the way to `token` (which must exist).
  Place next(Place at, std::int32_t token) const {
    if (at.index + 1 < edges_[at.edge].length) return {at.edge, at.index + 1};
    return {find_child(at.edge, token), 0};
  }

  // Preorder layout starting at in-row position `base`; returns the position after the tree.
  std::int32_t lay_out(std::int32_t row, std::int32_t base) {
    row_ = row;
    const std::size_t count = edges_.size();
    pos_.assign(count, 0);
    subtree_.assign(count, 0);
    std::vector<std::int32_t> order, stack{kRoot};
    order.reserve(count);
    std::int32_t next = base;
    while (!stack.empty()) {
      const std::int32_t e = stack.back();
      stack.pop_back();
      order.push_back(e);
      pos_[e] = next;
      next += edges_[e].length;
      for (std::int32_t c = edges_[e].last_child; c != kNone; c = edges_[c].prev_sibling)
        stack.push_back(c);
    }
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      subtree_[*it] += edges_[*it].length;
      if (*it != kRoot) subtree_[edges_[*it].parent] += subtree_[*it];
    }
    return next;
  }

  std::int32_t row() const { return row_; }
  // In-row position of a token (after lay_out).
  std::int32_t position(Place at) const { return pos_[at.edge] + at.index; }

  // Writes the tree's tokens into one row of the [R, L] outputs (after lay_out).
  void write(std::int32_t* input_ids, std::int32_t* position_ids, std::int32_t* parent,
             std::int32_t* subtree_end) const {
    for (std::size_t e = 1; e < edges_.size(); ++e) {
      const Edge& edge = edges_[e];
      const std::int32_t p = pos_[e];
      const std::int32_t end = p + subtree_[e];
      parent[p] = edge.parent == kRoot ? -1 : position(end_of(edge.parent));
      for (std::int32_t k = 0; k < edge.length; ++k) {
        input_ids[p + k] = edge.tokens[k];
        position_ids[p + k] = edge.depth + k;
        subtree_end[p + k] = end;
      }
      for (std::int32_t k = 1; k < edge.length; ++k) parent[p + k] = p + k - 1;
    }
  }

 private:
  static constexpr std::int32_t kScanFanout = 16;
  static std::uint64_t key(std::int32_t edge, std::int32_t token) {
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(edge)) << 32) |
           static_cast<std::uint32_t>(token);
  }

  struct Edge {
    const std::int32_t* tokens = nullptr;
    std::int32_t length = 0;
    std::int32_t depth = 0;  // depth (position id) of its first token
    std::int32_t parent = kNone;
    std::int32_t first_child = kNone, last_child = kNone;
    std::int32_t prev_sibling = kNone, next_sibling = kNone;
    std::int32_t fanout = 0;
  };

  std::int32_t end_depth(std::int32_t e) const { return edges_[e].depth + edges_[e].length - 1; }

  std::int32_t find_child(std::int32_t e, std::int32_t token) const {
    if (edges_[e].fanout > kScanFanout) {
      const auto it = hashed_.find(key(e, token));
      return it == hashed_.end() ? kNone : it->second;
    }
    for (std::int32_t c = edges_[e].first_child; c != kNone; c = edges_[c].next_sibling)
      if (edges_[c].tokens[0] == token) return c;
    return kNone;
  }

  // Appends a new last child of `e` holding t[0, n).
  std::int32_t add_child(std::int32_t e, const std::int32_t* t, std::int64_t n) {
    const auto c = static_cast<std::int32_t>(edges_.size());
    edges_.emplace_back();
    Edge& child = edges_[c];
    Edge& parent = edges_[e];
    child.tokens = t;
    child.length = static_cast<std::int32_t>(n);
    child.depth = parent.depth + parent.length;
    child.parent = e;
    child.prev_sibling = parent.last_child;
    if (parent.last_child == kNone)
      parent.first_child = c;
    else
      edges_[parent.last_child].next_sibling = c;
    parent.last_child = c;
    if (++parent.fanout == kScanFanout + 1) {
      for (std::int32_t s = parent.first_child; s != kNone; s = edges_[s].next_sibling)
        hashed_.emplace(key(e, edges_[s].tokens[0]), s);
    } else if (parent.fanout > kScanFanout) {
      hashed_.emplace(key(e, t[0]), c);
    }
    tokens_ += n;
    return c;
  }

  // Splits edge `e` before depth d (strictly inside it): a new edge takes its upper part and its
  // place among its siblings; `e` keeps the lower part (and its children) as the new edge's only
  // child. Returns the new upper edge.
  std::int32_t split(std::int32_t e, std::int32_t d) {
    const auto u = static_cast<std::int32_t>(edges_.size());
    edges_.emplace_back();
    Edge& lower = edges_[e];
    Edge& upper = edges_[u];
    const std::int32_t upper_length = d - lower.depth;
    upper.tokens = lower.tokens;
    upper.length = upper_length;
    upper.depth = lower.depth;
    upper.parent = lower.parent;
    upper.prev_sibling = lower.prev_sibling;
    upper.next_sibling = lower.next_sibling;
    upper.first_child = upper.last_child = e;
    upper.fanout = 1;
    Edge& parent = edges_[lower.parent];
    if (upper.prev_sibling == kNone)
      parent.first_child = u;
    else
      edges_[upper.prev_sibling].next_sibling = u;
    if (upper.next_sibling == kNone)
      parent.last_child = u;
    else
      edges_[upper.next_sibling].prev_sibling = u;
    if (parent.fanout > kScanFanout) hashed_[key(lower.parent, lower.tokens[0])] = u;
    lower.tokens += upper_length;
    lower.length -= upper_length;
    lower.depth = d;
    lower.parent = u;
    lower.prev_sibling = lower.next_sibling = kNone;
    return u;
  }

  std::vector<Edge> edges_;
  std::unordered_map<std::uint64_t, std::int32_t> hashed_;
  std::int64_t tokens_ = 0;
  std::int32_t row_ = -1;
  std::vector<std::int32_t> pos_, subtree_;  // per edge, after lay_out
};

std::string sequence_name(std::size_t i) { return "sequences[" + std::to_string(i) + "]"; }

std::string branch_name(std::size_t i, std::size_t j) {
  return sequence_name(i) + ".branches[" + std::to_string(j) + "]";
}

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

PackError too_long(std::size_t i, std::int64_t max_tokens) {
  return PackError(sequence_name(i) +
                   " does not fit in a row of max_tokens=" + std::to_string(max_tokens) +
                   " (its context up to the last branch plus its branches)");
}

}  // namespace

Packer::~Packer() = default;

Packer::Packer(const PackInput& input, const PackOptions& options)
    : input_(input), options_(options) {
  check_options(options_);
  const std::size_t n = input_.sequences.size();
  trunk_length_.assign(n, 0);
  tree_size_.assign(n, 0);
  tree_of_.assign(n, -1);
  attach_edge_.assign(input_.branches.size(), Tree::kRoot);
  for (std::size_t i = 0; i < n; ++i) {
    validate_sequence(i);
    if (input_.sequences[i].num_branches == 0) continue;
    // The sequence's own tree: its size decides the placement (and without sharing it is what
    // the row holds).
    Tree own;
    insert_sequence(i, own);
    tree_size_[i] = own.tokens();
    if (!options_.share_prefixes) {
      tree_of_[i] = static_cast<std::int32_t>(trees_.size());
      trees_.push_back(std::make_unique<Tree>(std::move(own)));
    }
  }
  place_sequences();
}

// Value checks of sequence `index` (types were checked by the bindings); records its trunk.
void Packer::validate_sequence(std::size_t index) {
  const SequenceInput& seq = input_.sequences[index];
  const std::int64_t vocab = options_.vocab_size;
  check_token_range(seq.context, vocab, [&] { return sequence_name(index) + ".context"; });
  std::int64_t trunk = 0;
  for (std::int64_t j = 0; j < seq.num_branches; ++j) {
    const BranchInput& b = input_.branches[seq.first_branch + j];
    if (b.tokens.size == 0) throw PackError(branch_name(index, j) + ".tokens is empty");
    // The hidden row of the token before a branch predicts its first token: at offset 0 there
    // is none, and the first token would silently drop out of the loss.
    if (b.offset < 1)
      throw PackError(branch_name(index, j) + ".offset " + std::to_string(b.offset) +
                      " is below 1: a branch must follow at least one context token, which "
                      "predicts the branch's first token");
    if (b.offset > seq.context.size)
      throw PackError(branch_name(index, j) + ".offset " + std::to_string(b.offset) +
                      " is past the end of the context (" + std::to_string(seq.context.size) +
                      " tokens)");
    check_token_range(b.tokens, vocab, [&] { return branch_name(index, j) + ".tokens"; });
    if (!std::isfinite(static_cast<float>(b.weight)))
      throw PackError(branch_name(index, j) + ".weight is not finite in float32");
    trunk = std::max(trunk, b.offset);
    naive_tokens_ += b.offset + b.tokens.size;
    num_targets_ += b.tokens.size;
  }
  trunk_length_[index] = trunk;
}

// Inserts sequence `index` into `tree`: its trunk, then each branch from the edge that ends at
// its attachment point (recorded in attach_edge_). Throws if the tree would exceed max_tokens.
void Packer::insert_sequence(std::size_t index, Tree& tree) {
  const std::int64_t limit = options_.max_tokens;
  const SequenceInput& seq = input_.sequences[index];
  const std::int32_t* context = seq.context.data;
  Tree::Place at;
  if (!tree.insert(at, context, trunk_length_[index], limit))
    throw too_long(index, options_.max_tokens);

  // Attachment points, top-down: split the trunk so that an edge ends at each of them.
  std::vector<std::pair<std::int64_t, std::int64_t>> offsets;  // (offset, branch)
  for (std::int64_t b = seq.first_branch; b < seq.first_branch + seq.num_branches; ++b)
    offsets.emplace_back(input_.branches[b].offset, b);
  std::sort(offsets.begin(), offsets.end());
  std::int32_t edge = Tree::kRoot;
  for (std::size_t k = 0; k < offsets.size(); ++k) {
    if (k == 0 || offsets[k].first != offsets[k - 1].first)
      edge = tree.edge_ending_at(context, static_cast<std::int32_t>(offsets[k].first - 1), edge);
    attach_edge_[offsets[k].second] = edge;
  }
  // Splits never move the end of an edge, so the attachment edges stay valid.
  for (std::int64_t b = seq.first_branch; b < seq.first_branch + seq.num_branches; ++b) {
    const BranchInput& branch = input_.branches[b];
    Tree::Place place = tree.end_of(attach_edge_[b]);
    if (!tree.insert(place, branch.tokens.data, branch.tokens.size, limit))
      throw too_long(index, options_.max_tokens);
  }
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
    if (input_.sequences[i].num_branches > 0) order.push_back(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) { return tree_size_[a] > tree_size_[b]; });

  const std::int64_t common = common_prefix();
  const bool share = options_.share_prefixes;
  FirstFit free_space(std::max<std::size_t>(order.size(), 1));
  std::vector<std::int64_t> used;
  for (const std::size_t i : order) {
    std::int64_t r = free_space.find(tree_size_[i] - common);
    if (r < 0) {
      r = static_cast<std::int64_t>(rows_.size());
      rows_.emplace_back();
      used.push_back(0);
      if (share) {
        rows_.back().push_back(static_cast<std::int32_t>(trees_.size()));
        trees_.push_back(std::make_unique<Tree>());
      }
    }
    if (share) {
      // The sequence joins the row's trie; first-fit guarantees it fits.
      tree_of_[i] = rows_[r].front();
      Tree& tree = *trees_[tree_of_[i]];
      insert_sequence(i, tree);
      used[r] = tree.tokens();
    } else {
      rows_[r].push_back(tree_of_[i]);
      used[r] += tree_size_[i];
    }
    free_space.set(static_cast<std::size_t>(r), options_.max_tokens - used[r]);
  }
  for (std::size_t r = 0; r < rows_.size(); ++r) {
    std::int32_t end = 0;
    for (const std::int32_t t : rows_[r])
      end = trees_[t]->lay_out(static_cast<std::int32_t>(r), end);
    length_ = std::max<std::int64_t>(length_, end);
    packed_tokens_ += end;
  }
}

void Packer::write(const PackOutput& out) const {
  const std::int64_t length = length_;
  const auto pad_id = static_cast<std::int32_t>(options_.pad_id);
  for (std::size_t r = 0; r < rows_.size(); ++r) {
    const std::int64_t base = static_cast<std::int64_t>(r) * length;
    std::int64_t used = 0;
    for (const std::int32_t t : rows_[r]) {
      trees_[t]->write(out.input_ids + base, out.position_ids + base, out.parent + base,
                       out.subtree_end + base);
      used += trees_[t]->tokens();
    }
    for (std::int64_t pos = used; pos < length; ++pos) {
      out.input_ids[base + pos] = pad_id;
      out.position_ids[base + pos] = 0;
      out.parent[base + pos] = -1;
      out.subtree_end[base + pos] = static_cast<std::int32_t>(pos + 1);
    }
    out.row_lengths[r] = static_cast<std::int32_t>(used);
  }

  // Targets in global branch order; token j is predicted by its tree parent (for j = 0 the last
  // token of the branch's prefix, which exists: offsets are at least 1).
  std::int64_t m = 0;
  for (std::size_t i = 0; i < input_.sequences.size(); ++i) {
    const SequenceInput& seq = input_.sequences[i];
    if (tree_of_[i] < 0) continue;
    const Tree& tree = *trees_[tree_of_[i]];
    const std::int64_t row_base = static_cast<std::int64_t>(tree.row()) * length;
    for (std::int64_t b = seq.first_branch; b < seq.first_branch + seq.num_branches; ++b) {
      const BranchInput& branch = input_.branches[b];
      const auto weight = static_cast<float>(branch.weight);
      Tree::Place at = tree.end_of(attach_edge_[b]);
      for (std::int64_t k = 0; k < branch.tokens.size; ++k) {
        const std::int32_t token = branch.tokens.data[k];
        out.target_rows[m] = row_base + tree.position(at);
        out.target_ids[m] = token;
        out.target_weights[m] = weight;
        out.target_branch[m] = static_cast<std::int32_t>(b);
        ++m;
        at = tree.next(at, token);
      }
    }
  }
}

}  // namespace swirl
