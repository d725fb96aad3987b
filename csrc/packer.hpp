// Prefix-shared packing of token trees. A trajectory's states are prefixes of one recorded token
// sequence and the actions sampled at a state all continue that prefix, so one forward pass over
// a trie of them gives the same logits as running every (state, action) as its own sequence, with
// each shared prefix computed once instead of once per step and sample.
//
// A trajectory is one recorded token sequence (its context) with branches: sampled or recorded
// actions attached after the first `offset` context tokens. Every branch's full path
// context[:offset] + tokens is inserted into a trie, so each distinct prefix is computed once.
// Sequences are bin-packed into rows of at most max_tokens (first-fit decreasing); with
// share_prefixes the sequences of one row share a single trie (common instructions are packed
// once). A row lays its trie out in depth-first preorder, so a token's subtree is the contiguous
// range [pos, subtree_end): token q attends to k exactly when k <= q < subtree_end[k].
//
// Determinism (the Python reference pack_py in swirl/packing.py matches it array for array):
// - a sequence's trie is built by inserting its context up to the largest branch offset, then
//   each branch in input order;
// - sequences are placed in decreasing order of their own trie size (ties: input order) into the
//   first row whose packed length plus (size - common) fits, where `common` is the longest prefix
//   all placed sequences' contexts share (0 without share_prefixes); otherwise a new row opens;
// - a sequence joins its row's trie the same way (context, then branches in input order); the
//   children of a node keep the order in which they were created, which fixes the preorder.
//
// The tries are radix trees whose edges point into the input arrays: per token the packer only
// validates, compares where prefixes are shared, and writes the outputs.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace swirl {

// Read-only contiguous run of token ids (the bindings copy strided arrays first).
struct TokenSpan {
  const std::int32_t* data = nullptr;
  std::int64_t size = 0;
};

struct BranchInput {
  std::int64_t offset = 0;  // attached after the first `offset` (>= 1) context tokens
  TokenSpan tokens;
  double weight = 0.0;
};

struct SequenceInput {
  TokenSpan context;
  std::int64_t first_branch = 0;  // index into PackInput::branches
  std::int64_t num_branches = 0;
};

struct PackInput {
  std::vector<SequenceInput> sequences;
  std::vector<BranchInput> branches;  // grouped by sequence, in input order
};

struct PackOptions {
  std::int64_t max_tokens = 0;
  bool share_prefixes = true;
  std::int64_t vocab_size = -1;  // < 0: no upper bound (negative ids are always rejected)
  std::int64_t pad_id = 0;
};

// Largest accepted max_tokens: node ids and positions are int32.
constexpr std::int64_t kMaxRowTokens = 2147483646;

// Invalid input; the message names the sequence and branch. The bindings raise ValueError.
class PackError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// How errors name an input: "sequences[i]" and "sequences[i].branches[j]".
std::string sequence_name(std::size_t i);
std::string branch_name(std::size_t i, std::size_t j);

// Caller-allocated outputs sized by Packer::rows(), length() and targets(). Row-major [R, L].
struct PackOutput {
  std::int32_t* input_ids = nullptr;      // [R*L] token ids, pad_id on padding
  std::int32_t* position_ids = nullptr;   // [R*L] depth in the tree (0 on padding)
  std::int32_t* parent = nullptr;         // [R*L] in-row index of the parent, -1 for roots/padding
  std::int32_t* subtree_end = nullptr;    // [R*L] exclusive end of the token's subtree
  std::int32_t* row_lengths = nullptr;    // [R] tokens used in each row
  std::int64_t* target_rows = nullptr;    // [M] flat index r*L + pos of the predicting token
  std::int32_t* target_ids = nullptr;     // [M] predicted token
  float* target_weights = nullptr;        // [M] weight of the target's branch
  std::int32_t* target_branch = nullptr;  // [M] global branch index (input order)
};

class Tree;  // packer.cpp: radix tree over token runs

// Validates and packs on construction (throws PackError); write() fills the outputs.
class Packer {
 public:
  Packer(const PackInput& input, const PackOptions& options);
  ~Packer();

  std::int64_t rows() const { return static_cast<std::int64_t>(rows_.size()); }
  std::int64_t length() const { return length_; }
  std::int64_t targets() const { return num_targets_; }
  std::int64_t naive_tokens() const { return naive_tokens_; }
  std::int64_t packed_tokens() const { return packed_tokens_; }

  void write(const PackOutput& out) const;

 private:
  void validate_sequence(std::size_t index);
  void insert_sequence(std::size_t index, Tree& tree);
  std::int64_t common_prefix() const;
  void place_sequences();

  const PackInput& input_;  // must outlive the Packer: the trees point into its arrays
  PackOptions options_;

  std::vector<std::int64_t> trunk_length_;  // context tokens kept: the largest branch offset
  std::vector<std::int64_t> tree_size_;     // tokens in the sequence's own trie
  std::vector<std::int32_t> tree_of_;       // per sequence: index into trees_ (-1: no branches)
  std::vector<std::int32_t> attach_edge_;   // per branch: edge ending at context token offset - 1
  std::vector<std::unique_ptr<Tree>> trees_;
  // A row: its trees in layout order (one shared trie, or one trie per sequence).
  std::vector<std::vector<std::int32_t>> rows_;

  std::int64_t length_ = 0;
  std::int64_t num_targets_ = 0;
  std::int64_t naive_tokens_ = 0;
  std::int64_t packed_tokens_ = 0;
};

}  // namespace swirl
