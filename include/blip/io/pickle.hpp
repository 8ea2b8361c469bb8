// blip/io/pickle.hpp — a restricted unpickler: reads the pickle subset that state dicts use and
// never executes anything.
//
// Contract: parse_pickle(bytes, size, what, allowed_globals) runs the pickle machine up to STOP
// and returns a PickleDocument: the object graph as plain values (None, bool, int, big int as
// raw bytes, float, string, bytes, list, tuple, dict, global, call, persistent id). GLOBAL and
// STACK_GLOBAL must name an entry of allowed_globals ("module.name"); REDUCE of
// collections.OrderedDict gives an empty dict, REDUCE of any other allowed global is recorded as
// a call (callable + argument tuple) for the caller to interpret; BUILD records its state on a
// dict or call; BINPERSID/PERSID record the persistent id. Anything else — an unknown opcode, a
// global outside the list, a malformed argument — throws blip::Error naming `what`, the opcode
// or global and its byte offset. Lengths are checked against the bytes left before anything is
// allocated; stack, mark stack, memo, value count and nesting depth are bounded (PickleLimits),
// and the machine has no recursion. Values may still form cycles through mutated containers, so
// consumers walk the graph with a depth bound (PickleDocument::check_depth).
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "blip/core/error.hpp"

namespace blip::io {

enum class PickleKind : uint8_t { None, Bool, Int, BigInt, Float, String, Bytes, List, Tuple, Dict, Global, Call, PersistentId };

inline const char* pickle_kind_name(PickleKind k) {
  static const char* names[] = {"None", "bool", "int", "big int", "float", "str", "bytes",
                                "list", "tuple", "dict", "global", "call", "persistent id"};
  return names[static_cast<int>(k)];
}

using PickleRef = uint32_t;
inline constexpr PickleRef kNoPickleRef = 0xffffffffu;

struct PickleValue {
  PickleKind kind = PickleKind::None;
  int64_t integer = 0;  // Bool, Int
  double real = 0;      // Float
  std::string text;     // String, Bytes, BigInt (little-endian two's complement), Global ("module.name")
  // List/Tuple: the items; Dict: key, value, key, value...; Call: callable, argument tuple;
  // PersistentId: the id.
  std::vector<PickleRef> items;
  PickleRef state = kNoPickleRef;  // BUILD's argument, if any
  uint64_t offset = 0;             // byte offset of the opcode that made it
  uint32_t depth = 1;              // containers: 1 + the deepest item seen so far
};

struct PickleLimits {
  uint32_t max_depth = 64;             // nesting of containers and marks
  uint64_t max_values = 1u << 23;      // values created in total
  uint64_t max_stack = 1u << 22;       // stack entries
  uint64_t max_memo = 1u << 22;        // memo entries
  uint64_t max_container = 1u << 22;   // items in one list/tuple/dict
  uint64_t max_string = 1ull << 30;    // bytes in one string
  uint64_t max_big_int = 64;           // bytes of a LONG1/LONG4 integer
};

class PickleDocument {
 public:
  PickleRef root = kNoPickleRef;
  uint64_t end = 0;  // bytes consumed, STOP included (several pickles may follow one another)
  std::string what;

  const PickleValue& at(PickleRef r) const { return values_.at(r); }
  size_t size() const { return values_.size(); }
  // Throws unless the value's graph is at most max_depth deep (cycles included: they are infinite).
  void check_depth(PickleRef r, uint32_t max_depth) const {
    std::vector<std::pair<PickleRef, uint32_t>> todo{{r, 1}};
    std::vector<uint8_t> seen(values_.size(), 0);  // values proven shallow enough from a depth <= recorded
    std::vector<uint32_t> best(values_.size(), 0);
    while (!todo.empty()) {
      auto [v, d] = todo.back();
      todo.pop_back();
      BLIP_CHECK(d <= max_depth, "pickle: ", what, ": the value made at byte ", values_[v].offset, " nests deeper than ",
                 max_depth, " levels");
      if (seen[v] && best[v] >= d) continue;
      seen[v] = 1;
      best[v] = d;
      for (PickleRef c : values_[v].items) todo.emplace_back(c, d + 1);
      if (values_[v].state != kNoPickleRef) todo.emplace_back(values_[v].state, d + 1);
    }
  }

 private:
  friend class Unpickler;
  std::vector<PickleValue> values_;
};

class Unpickler {
 public:
  Unpickler(const uint8_t* data, uint64_t size, std::string what, const std::set<std::string>& allowed_globals,
            PickleLimits limits = {})
      : p_(data), size_(size), allowed_(allowed_globals), limits_(limits) {
    doc_.what = std::move(what);
  }

  PickleDocument run() {
    while (true) {
      BLIP_CHECK(pos_ < size_, "pickle: ", doc_.what, ": data ends at byte ", pos_, " before STOP");
      op_at_ = pos_;
      const uint8_t op = p_[pos_++];
      switch (op) {
        case 0x80: {  // PROTO
          const uint8_t v = u8();
          BLIP_CHECK(v <= 5, err("PROTO"), " declares unknown protocol ", int(v));
          break;
        }
        case 0x95: {  // FRAME: a length prefix for buffering; the opcodes inside are read as usual
          const uint64_t n = uint_le(8);
          BLIP_CHECK(n <= size_ - pos_, err("FRAME"), " of ", n, " bytes runs past the end (", size_, " bytes)");
          break;
        }
        case '.': {  // STOP
          doc_.root = pop("STOP");
          doc_.end = pos_;
          return std::move(doc_);
        }
        case '(':  // MARK
          BLIP_CHECK(marks_.size() < limits_.max_depth, err("MARK"), " nests deeper than ", limits_.max_depth, " levels");
          marks_.push_back(stack_.size());
          break;
        case 'N': push(make(PickleKind::None)); break;
        case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
          PickleRef r = make(PickleKind::Bool);
          values()[r].integer = op == 0x88;
          push(r);
          break;
        }
        case 'K': push_int(static_cast<int64_t>(uint_le(1))); break;                        // BININT1
        case 'M': push_int(static_cast<int64_t>(uint_le(2))); break;                        // BININT2
        case 'J': push_int(static_cast<int32_t>(static_cast<uint32_t>(uint_le(4)))); break;  // BININT
        case 0x8a: push_long(uint_le(1), "LONG1"); break;
        case 0x8b: {  // LONG4
          const int32_t n = static_cast<int32_t>(static_cast<uint32_t>(uint_le(4)));
          BLIP_CHECK(n >= 0, err("LONG4"), " has negative length ", n);
          push_long(static_cast<uint64_t>(n), "LONG4");
          break;
        }
        case 'G': {  // BINFLOAT: big-endian IEEE double
          const uint64_t bits = __builtin_bswap64(uint_le(8));
          PickleRef r = make(PickleKind::Float);
          values()[r].real = std::bit_cast<double>(bits);
          push(r);
          break;
        }
        case 0x8c: push_text(PickleKind::String, uint_le(1), "SHORT_BINUNICODE"); break;
        case 'X': push_text(PickleKind::String, uint_le(4), "BINUNICODE"); break;
        case 0x8d: push_text(PickleKind::String, uint_le(8), "BINUNICODE8"); break;
        case 'U': push_text(PickleKind::String, uint_le(1), "SHORT_BINSTRING"); break;
        case 'T': {  // BINSTRING: signed 4-byte length
          const int32_t n = static_cast<int32_t>(static_cast<uint32_t>(uint_le(4)));
          BLIP_CHECK(n >= 0, err("BINSTRING"), " has negative length ", n);
          push_text(PickleKind::String, static_cast<uint64_t>(n), "BINSTRING");
          break;
        }
        case 'C': push_text(PickleKind::Bytes, uint_le(1), "SHORT_BINBYTES"); break;
        case 'B': push_text(PickleKind::Bytes, uint_le(4), "BINBYTES"); break;
        case 0x8e: push_text(PickleKind::Bytes, uint_le(8), "BINBYTES8"); break;
        case '}': push(make(PickleKind::Dict)); break;   // EMPTY_DICT
        case ']': push(make(PickleKind::List)); break;   // EMPTY_LIST
        case ')': push(make(PickleKind::Tuple)); break;  // EMPTY_TUPLE
        case 'l': push(container_from_mark(PickleKind::List, "LIST")); break;
        case 't': push(container_from_mark(PickleKind::Tuple, "TUPLE")); break;
        case 'd': {  // DICT
          PickleRef r = container_from_mark(PickleKind::Dict, "DICT");
          BLIP_CHECK(values()[r].items.size() % 2 == 0, err("DICT"), " has an odd number of items");
          push(r);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t n = op - 0x84u;
          BLIP_CHECK(stack_.size() >= n + floor(), err("TUPLE" + std::to_string(n)), " needs ", n, " items on the stack");
          std::vector<PickleRef> items(stack_.end() - static_cast<ptrdiff_t>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          PickleRef r = make(PickleKind::Tuple);
          add_items(r, items, "TUPLE");
          push(r);
          break;
        }
        case 'a': {  // APPEND
          PickleRef item = pop("APPEND");
          PickleRef list = top("APPEND");
          BLIP_CHECK(values()[list].kind == PickleKind::List, err("APPEND"), " to a ", kind_of(list), ", not a list");
          add_items(list, {item}, "APPEND");
          break;
        }
        case 'e': {  // APPENDS
          std::vector<PickleRef> items = pop_mark("APPENDS");
          PickleRef list = top("APPENDS");
          BLIP_CHECK(values()[list].kind == PickleKind::List, err("APPENDS"), " to a ", kind_of(list), ", not a list");
          add_items(list, items, "APPENDS");
          break;
        }
        case 's': {  // SETITEM
          PickleRef value = pop("SETITEM");
          PickleRef key = pop("SETITEM");
          PickleRef dict = top("SETITEM");
          BLIP_CHECK(values()[dict].kind == PickleKind::Dict, err("SETITEM"), " on a ", kind_of(dict), ", not a dict");
          add_items(dict, {key, value}, "SETITEM");
          break;
        }
        case 'u': {  // SETITEMS
          std::vector<PickleRef> items = pop_mark("SETITEMS");
          PickleRef dict = top("SETITEMS");
          BLIP_CHECK(values()[dict].kind == PickleKind::Dict, err("SETITEMS"), " on a ", kind_of(dict), ", not a dict");
          BLIP_CHECK(items.size() % 2 == 0, err("SETITEMS"), " has an odd number of items");
          add_items(dict, items, "SETITEMS");
          break;
        }
        case 'q': memo_put(uint_le(1), "BINPUT"); break;
        case 'r': memo_put(uint_le(4), "LONG_BINPUT"); break;
        case 0x94: memo_put(memo_.size(), "MEMOIZE"); break;
        case 'h': memo_get(uint_le(1), "BINGET"); break;
        case 'j': memo_get(uint_le(4), "LONG_BINGET"); break;
        case 'c': {  // GLOBAL: "module\nname\n"
          const std::string module = line("GLOBAL");
          const std::string name = line("GLOBAL");
          push_global(module, name, "GLOBAL");
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          PickleRef name = pop("STACK_GLOBAL");
          PickleRef module = pop("STACK_GLOBAL");
          BLIP_CHECK(values()[module].kind == PickleKind::String && values()[name].kind == PickleKind::String,
                     err("STACK_GLOBAL"), " needs two strings");
          push_global(values()[module].text, values()[name].text, "STACK_GLOBAL");
          break;
        }
        case 'R': {  // REDUCE
          PickleRef args = pop("REDUCE");
          PickleRef callable = pop("REDUCE");
          BLIP_CHECK(values()[callable].kind == PickleKind::Global, err("REDUCE"), " calls a ", kind_of(callable),
                     ", not an allowed global");
          BLIP_CHECK(values()[args].kind == PickleKind::Tuple, err("REDUCE"), " of ", values()[callable].text,
                     " has a ", kind_of(args), " for its arguments, not a tuple");
          if (values()[callable].text == "collections.OrderedDict") {
            BLIP_CHECK(values()[args].items.empty(), err("REDUCE"),
                       " of collections.OrderedDict with arguments (only OrderedDict() is read)");
            push(make(PickleKind::Dict));
          } else {
            PickleRef r = make(PickleKind::Call);
            add_items(r, {callable, args}, "REDUCE");
            push(r);
          }
          break;
        }
        case 'b': {  // BUILD
          PickleRef state = pop("BUILD");
          PickleRef target = top("BUILD");
          const PickleKind k = values()[target].kind;
          BLIP_CHECK(k == PickleKind::Dict || k == PickleKind::Call, err("BUILD"), " on a ", kind_of(target),
                     " (only dicts and calls take a state)");
          values()[target].state = state;
          deepen(target, state, "BUILD");
          break;
        }
        case 'Q': {  // BINPERSID
          PickleRef id = pop("BINPERSID");
          PickleRef r = make(PickleKind::PersistentId);
          add_items(r, {id}, "BINPERSID");
          push(r);
          break;
        }
        case 'P': {  // PERSID: the id is an ASCII line
          PickleRef id = make(PickleKind::String);
          values()[id].text = line("PERSID");
          PickleRef r = make(PickleKind::PersistentId);
          add_items(r, {id}, "PERSID");
          push(r);
          break;
        }
        default:
          fail("pickle: ", doc_.what, ": opcode ", opcode_name(op), " at byte ", op_at_,
               " is not supported (blip reads state-dict pickles only)");
      }
    }
  }

 private:
  static std::string opcode_name(uint8_t op) {
    static const char* hex = "0123456789abcdef";
    std::string s = "0x";
    s += hex[op >> 4];
    s += hex[op & 15];
    if (op >= 0x20 && op < 0x7f) s += str(" ('", static_cast<char>(op), "')");
    return s;
  }
  std::string err(const std::string& opname) const {
    return str("pickle: ", doc_.what, ": ", opname, " at byte ", op_at_);
  }
  std::vector<PickleValue>& values() { return doc_.values_; }
  const char* kind_of(PickleRef r) const { return pickle_kind_name(doc_.values_[r].kind); }
  size_t floor() const { return marks_.empty() ? 0 : marks_.back(); }

  uint64_t uint_le(int n) {
    BLIP_CHECK(static_cast<uint64_t>(n) <= size_ - pos_, "pickle: ", doc_.what, ": opcode at byte ", op_at_,
               " needs ", n, " argument bytes but the data ends at byte ", size_);
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p_[pos_ + static_cast<uint64_t>(i)]) << (8 * i);
    pos_ += static_cast<uint64_t>(n);
    return v;
  }
  uint8_t u8() { return static_cast<uint8_t>(uint_le(1)); }
  std::string bytes(uint64_t n, const char* opname) {
    BLIP_CHECK(n <= limits_.max_string, err(opname), " of ", n, " bytes exceeds the limit of ", limits_.max_string);
    BLIP_CHECK(n <= size_ - pos_, err(opname), " of ", n, " bytes runs past the end of the data (", size_, " bytes)");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }
  std::string line(const char* opname) {
    const uint64_t start = pos_;
    while (pos_ < size_ && p_[pos_] != '\n') {
      BLIP_CHECK(pos_ - start < 256, err(opname), " has an argument line longer than 256 bytes");
      ++pos_;
    }
    BLIP_CHECK(pos_ < size_, err(opname), " has an argument line that the data ends inside");
    std::string s(reinterpret_cast<const char*>(p_ + start), pos_ - start);
    ++pos_;
    return s;
  }

  PickleRef make(PickleKind kind) {
    BLIP_CHECK(values().size() < limits_.max_values, err("opcode"), " creates more than ", limits_.max_values, " values");
    PickleValue v;
    v.kind = kind;
    v.offset = op_at_;
    values().push_back(std::move(v));
    return static_cast<PickleRef>(values().size() - 1);
  }
  void push(PickleRef r) {
    BLIP_CHECK(stack_.size() < limits_.max_stack, err("opcode"), " grows the stack past ", limits_.max_stack, " entries");
    stack_.push_back(r);
  }
  PickleRef pop(const char* opname) {
    BLIP_CHECK(stack_.size() > floor(), err(opname), " pops an empty stack");
    PickleRef r = stack_.back();
    stack_.pop_back();
    return r;
  }
  PickleRef top(const char* opname) {
    BLIP_CHECK(stack_.size() > floor(), err(opname), " needs a value on the stack");
    return stack_.back();
  }
  std::vector<PickleRef> pop_mark(const char* opname) {
    BLIP_CHECK(!marks_.empty(), err(opname), " has no MARK before it");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<PickleRef> items(stack_.begin() + static_cast<ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  PickleRef container_from_mark(PickleKind kind, const char* opname) {
    std::vector<PickleRef> items = pop_mark(opname);
    PickleRef r = make(kind);
    add_items(r, items, opname);
    return r;
  }
  void deepen(PickleRef container, PickleRef item, const char* opname) {
    const uint32_t d = values()[item].depth + 1;
    if (d > values()[container].depth) values()[container].depth = d;
    BLIP_CHECK(values()[container].depth <= limits_.max_depth, err(opname), " nests values deeper than ",
               limits_.max_depth, " levels");
  }
  void add_items(PickleRef container, const std::vector<PickleRef>& items, const char* opname) {
    BLIP_CHECK(items.size() <= limits_.max_container - values()[container].items.size(), err(opname), " makes a ",
               kind_of(container), " of more than ", limits_.max_container, " items");
    for (PickleRef item : items) {
      values()[container].items.push_back(item);
      deepen(container, item, opname);
    }
  }
  void push_int(int64_t v) {
    PickleRef r = make(PickleKind::Int);
    values()[r].integer = v;
    push(r);
  }
  void push_long(uint64_t n, const char* opname) {
    BLIP_CHECK(n <= limits_.max_big_int, err(opname), " of ", n, " bytes exceeds the limit of ", limits_.max_big_int);
    std::string b = bytes(n, opname);
    if (n > 8) {  // kept as raw bytes: only compared, never computed with
      PickleRef r = make(PickleKind::BigInt);
      values()[r].text = std::move(b);
      push(r);
      return;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(b[i])) << (8 * i);
    if (n > 0 && n < 8 && (static_cast<uint8_t>(b[n - 1]) & 0x80)) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    push_int(static_cast<int64_t>(v));
  }
  void push_text(PickleKind kind, uint64_t n, const char* opname) {
    std::string s = bytes(n, opname);
    PickleRef r = make(kind);
    values()[r].text = std::move(s);
    push(r);
  }
  void push_global(const std::string& module, const std::string& name, const char* opname) {
    const std::string full = module + "." + name;
    BLIP_CHECK(allowed_.count(full), "pickle: ", doc_.what, ": ", opname, " '", full, "' at byte ", op_at_,
               " is not allowed (only tensor rebuilding globals are read; nothing is ever executed)");
    PickleRef r = make(PickleKind::Global);
    values()[r].text = full;
    push(r);
  }
  void memo_put(uint64_t index, const char* opname) {
    PickleRef v = top(opname);
    auto it = memo_.find(index);
    if (it != memo_.end()) {
      it->second = v;
      return;
    }
    BLIP_CHECK(memo_.size() < limits_.max_memo, err(opname), " grows the memo past ", limits_.max_memo, " entries");
    memo_.emplace(index, v);
  }
  void memo_get(uint64_t index, const char* opname) {
    auto it = memo_.find(index);
    BLIP_CHECK(it != memo_.end(), err(opname), " reads memo entry ", index, ", which was never stored");
    push(it->second);
  }

  const uint8_t* p_;
  uint64_t size_;
  uint64_t pos_ = 0, op_at_ = 0;
  const std::set<std::string>& allowed_;
  PickleLimits limits_;
  PickleDocument doc_;
  std::vector<PickleRef> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, PickleRef> memo_;
};

inline PickleDocument parse_pickle(const uint8_t* data, uint64_t size, std::string what,
                                   const std::set<std::string>& allowed_globals, PickleLimits limits = {}) {
  return Unpickler(data, size, std::move(what), allowed_globals, limits).run();
}

}  // namespace blip::io
