#include "models/tokenizer/tokenizer.h"

#include <sys/stat.h>

#include <algorithm>

#include <nlohmann/json.hpp>

#include "models/tokenizer/added_vocab.h"
#include "models/tokenizer/bpe.h"
#include "models/tokenizer/decoder.h"
#include "models/tokenizer/json_load.h"
#include "models/tokenizer/pipeline.h"
#include "models/tokenizer/utf8.h"
#include "tensor/mapped_file.h"

namespace pensieve {

using nlohmann::json;

struct Tokenizer::Impl {
  std::string origin;
  tok::BpeModel model;
  tok::Normalizer normalizer;
  tok::PreTokenizer pre;
  tok::AddedVocab added;
  tok::Decoder decoder;
  std::vector<int32_t> prefix_ids, suffix_ids;  // post-processor, single sequence
  int32_t id_limit = 0;
  std::vector<bool> special;  // by id: decode(skip_special) drops it
  SpecialTokens special_tokens;
  std::string bos_token, eos_token, chat_template;

  const std::string* token_string(int32_t id) const {
    if (const tok::AddedToken* t = added.by_id(id)) return &t->content;
    return model.id_to_token(id);
  }
  int32_t lookup(std::string_view s) const {
    if (const tok::AddedToken* t = added.by_content(s)) return t->id;
    return model.token_to_id(s);
  }
  Status encode_text(std::string&& text, bool first, std::vector<int32_t>& ids) const;
};

namespace {

// Reads a whole file. Missing optional files are reported through `exists`.
Result<std::string> read_file(const std::string& path, bool* exists = nullptr) {
  struct stat sb;
  if (exists) {
    *exists = ::stat(path.c_str(), &sb) == 0;
    if (!*exists) return std::string();
  }
  auto f = MappedFile::open(path);
  if (!f.ok()) return std::move(f).take_error();
  return std::string(reinterpret_cast<const char*>(f->data()), f->size());
}

Result<json> parse_json(std::string_view text, const std::string& what) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    return errorf("%s: invalid JSON (%s)", what.c_str(), e.what());
  }
}

// tokenizer_config.json writes special tokens as "text" or {"content": "text", ...}.
std::string config_token(const json& cfg, const char* key) {
  if (!cfg.is_object() || !cfg.contains(key)) return {};
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return {};
}

// eos_token_id of config.json / generation_config.json: an int or a list of ints.
void collect_ids(const json& cfg, const char* key, std::vector<int32_t>& out) {
  if (!cfg.is_object() || !cfg.contains(key)) return;
  const json& v = cfg[key];
  if (v.is_number_integer()) out.push_back(v.get<int32_t>());
  if (v.is_array())
    for (const json& e : v)
      if (e.is_number_integer()) out.push_back(e.get<int32_t>());
}

// Post-processors, reduced to what they do to one sequence: ids before and after it.
Status parse_post_processor(const json& pp, const Tokenizer::Impl& impl,
                            std::vector<int32_t>& prefix, std::vector<int32_t>& suffix) {
  if (pp.is_null()) return Status::Ok();
  const std::string type = pp.value("type", std::string("?"));
  if (type == "Sequence") {
    if (!pp.contains("processors") || !pp["processors"].is_array())
      return errorf("tokenizer.json: post_processor Sequence without a \"processors\" array");
    for (const json& p : pp["processors"]) {
      std::vector<int32_t> pre, suf;
      PENSIEVE_TRY(parse_post_processor(p, impl, pre, suf));
      prefix.insert(prefix.begin(), pre.begin(), pre.end());
      suffix.insert(suffix.end(), suf.begin(), suf.end());
    }
    return Status::Ok();
  }
  if (type == "ByteLevel") return Status::Ok();  // offsets only
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    for (const char* key : {"cls", "sep"}) {
      const json& e = pp.value(key, json());
      if (!e.is_array() || e.size() != 2 || !e[1].is_number_integer())
        return errorf("tokenizer.json: post_processor %s: \"%s\" must be [token, id]", type.c_str(),
                      key);
      (std::string(key) == "cls" ? prefix : suffix).push_back(e[1].get<int32_t>());
    }
    return Status::Ok();
  }
  if (type != "TemplateProcessing")
    return errorf(
        "tokenizer.json: post_processor \"%s\" is not supported (supported: "
        "TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)",
        type.c_str());
  const json& single = pp.value("single", json());
  if (!single.is_array())
    return errorf(
        "tokenizer.json: post_processor TemplateProcessing without a \"single\" template");
  const json& specials = pp.value("special_tokens", json::object());
  bool seen_a = false;
  for (const json& item : single) {
    if (item.contains("Sequence")) {
      if (item["Sequence"].value("id", std::string("A")) != "A" || seen_a)
        return errorf("tokenizer.json: post_processor: the single template must contain $A once");
      seen_a = true;
    } else if (item.contains("SpecialToken")) {
      const std::string name = item["SpecialToken"].value("id", std::string());
      std::vector<int32_t>& dst = seen_a ? suffix : prefix;
      if (specials.is_object() && specials.contains(name) && specials[name].contains("ids") &&
          specials[name]["ids"].is_array()) {
        for (const json& id : specials[name]["ids"])
          if (id.is_number_integer()) dst.push_back(id.get<int32_t>());
      } else {
        const int32_t id = impl.lookup(name);
        if (id < 0)
          return errorf("tokenizer.json: post_processor: special token \"%s\" is unknown",
                        name.c_str());
        dst.push_back(id);
      }
    } else {
      return errorf("tokenizer.json: post_processor: unknown template item %s",
                    item.dump().substr(0, 80).c_str());
    }
  }
  if (!seen_a) return errorf("tokenizer.json: post_processor: the single template has no $A");
  return Status::Ok();
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Loading

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::build(tok::TokenizerJson&& doc, const json& cfg, std::string origin) {
  const json& tj = doc.rest;
  auto impl = std::make_unique<Tokenizer::Impl>();
  impl->origin = std::move(origin);
  if (!tj.is_object()) return errorf("tokenizer.json: expected a JSON object");
  if (!tj.contains("model")) return errorf("tokenizer.json: no \"model\"");

  auto norm = tok::Normalizer::from_json(tj.value("normalizer", json()));
  if (!norm.ok()) return std::move(norm).take_error();
  impl->normalizer = std::move(norm.value());
  auto pre = tok::PreTokenizer::from_json(tj.value("pre_tokenizer", json()));
  if (!pre.ok()) return std::move(pre).take_error();
  impl->pre = std::move(pre.value());
  const json& mj = tj["model"];
  if (mj.is_object() && mj.contains("type") && mj["type"] != "BPE")
    return errorf(
        "model.type is %s, expected \"BPE\" (pensieve supports BPE tokenizers: "
        "SentencePiece-style with byte fallback, and byte-level)",
        mj["type"].dump().c_str());
  if (!doc.has_vocab) return errorf("model.vocab: missing or not an object");
  if (!doc.has_merges) return errorf("model.merges: missing or not an array");
  auto model = tok::BpeModel::build(tj["model"], std::move(doc.vocab), std::move(doc.merges));
  if (!model.ok()) return std::move(model).take_error();
  impl->model = std::move(model.value());
  auto dec = tok::Decoder::from_json(tj.value("decoder", json()));
  if (!dec.ok()) return std::move(dec).take_error();
  impl->decoder = std::move(dec.value());

  // Tokens with normalized=true are looked for in normalized text: normalize their content too.
  const tok::Normalizer& n = impl->normalizer;
  auto added = tok::AddedVocab::from_json(tj.value("added_tokens", json()), [&n](std::string s) {
    (void)n.normalize(s);
    return s;
  });
  if (!added.ok()) return std::move(added).take_error();
  impl->added = std::move(added.value());

  impl->id_limit = impl->model.id_limit();
  for (const tok::AddedToken& t : impl->added.tokens())
    impl->id_limit = std::max(impl->id_limit, t.id + 1);
  // HF skips a token in decode(skip_special) when its *string* is a special token's content.
  impl->special.assign(impl->id_limit, false);
  for (const tok::AddedToken& t : impl->added.tokens()) {
    if (!t.special) continue;
    impl->special[t.id] = true;
    const int32_t mid = impl->model.token_to_id(t.content);
    if (mid >= 0 && !impl->added.by_id(mid)) impl->special[mid] = true;
  }

  PENSIEVE_TRY(parse_post_processor(tj.value("post_processor", json()), *impl, impl->prefix_ids,
                                    impl->suffix_ids));

  // tokenizer_config.json: special token strings, add_bos/eos_token, chat template.
  SpecialTokens& sp = impl->special_tokens;
  impl->bos_token = config_token(cfg, "bos_token");
  impl->eos_token = config_token(cfg, "eos_token");
  auto id_of = [&](const std::string& s) { return s.empty() ? -1 : impl->lookup(s); };
  sp.bos = id_of(impl->bos_token);
  sp.eos = id_of(impl->eos_token);
  sp.pad = id_of(config_token(cfg, "pad_token"));
  sp.unk = id_of(config_token(cfg, "unk_token"));
  if (sp.unk < 0) sp.unk = impl->model.unk_id();
  if (sp.bos < 0 && !impl->prefix_ids.empty()) sp.bos = impl->prefix_ids.front();
  if (sp.eos < 0)
    for (const char* name : {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>"})
      if (const tok::AddedToken* t = impl->added.by_content(name)) {
        sp.eos = t->id;
        break;
      }
  if (sp.bos >= 0 && impl->bos_token.empty()) impl->bos_token = *impl->token_string(sp.bos);
  if (sp.eos >= 0 && impl->eos_token.empty()) impl->eos_token = *impl->token_string(sp.eos);
  // transformers' add_bos_token / add_eos_token, when tokenizer.json's post-processor does not
  // already add them.
  auto flag = [&](const char* key) {
    return cfg.is_object() && cfg.contains(key) && cfg[key].is_boolean() && cfg[key].get<bool>();
  };
  if (flag("add_bos_token") && sp.bos >= 0 &&
      (impl->prefix_ids.empty() || impl->prefix_ids.front() != sp.bos))
    impl->prefix_ids.insert(impl->prefix_ids.begin(), sp.bos);
  if (flag("add_eos_token") && sp.eos >= 0 &&
      (impl->suffix_ids.empty() || impl->suffix_ids.back() != sp.eos))
    impl->suffix_ids.push_back(sp.eos);

  if (cfg.is_object() && cfg.contains("chat_template")) {
    const json& ct = cfg["chat_template"];
    if (ct.is_string()) {
      impl->chat_template = ct.get<std::string>();
    } else if (ct.is_array()) {  // [{"name": ..., "template": ...}]: the default one
      for (const json& e : ct)
        if (e.is_object() && e.contains("name") && e["name"] == "default" &&
            e.contains("template") && e["template"].is_string())
          impl->chat_template = e["template"].get<std::string>();
    }
  }

  if (sp.eos >= 0) sp.stop.push_back(sp.eos);
  for (const char* name :
       {"<|end|>", "<|endoftext|>", "<|eot_id|>", "<|im_end|>", "<|end_of_text|>"})
    if (const tok::AddedToken* t = impl->added.by_content(name)) sp.stop.push_back(t->id);
  std::sort(sp.stop.begin(), sp.stop.end());
  sp.stop.erase(std::unique(sp.stop.begin(), sp.stop.end()), sp.stop.end());
  return Tokenizer(std::move(impl));
}

Result<Tokenizer> Tokenizer::from_json(std::string_view tokenizer_json,
                                       std::string_view tokenizer_config_json,
                                       std::string_view origin) {
  const std::string where(origin);
  auto tj = tok::parse_tokenizer_json(tokenizer_json, where);
  if (!tj.ok()) return errorf("load_tokenizer: %s", tj.error().c_str());
  json cfg;
  if (!tokenizer_config_json.empty()) {
    auto c = parse_json(tokenizer_config_json, where + " (tokenizer_config)");
    if (!c.ok()) return errorf("load_tokenizer: %s", c.error().c_str());
    cfg = std::move(c.value());
  }
  try {
    auto t = build(std::move(tj.value()), cfg, where);
    if (!t.ok()) return errorf("load_tokenizer: %s: %s", where.c_str(), t.error().c_str());
    return t;
  } catch (const json::exception& e) {
    return errorf("load_tokenizer: %s: unexpected JSON structure (%s)", where.c_str(), e.what());
  }
}

Result<Tokenizer> Tokenizer::load(const std::string& dir) {
  const std::string tpath = dir + "/tokenizer.json";
  struct stat sb;
  if (::stat(dir.c_str(), &sb) != 0 || !S_ISDIR(sb.st_mode))
    return errorf(
        "load_tokenizer: %s is not a directory (expected a model directory with "
        "tokenizer.json)",
        dir.c_str());
  bool exists = false;
  auto text = read_file(tpath, &exists);
  if (!exists)
    return errorf(
        "load_tokenizer: %s not found (a model directory needs tokenizer.json; convert "
        "llama2.c tokenizers with `pensieve import-llama2c`)",
        tpath.c_str());
  if (!text.ok()) return errorf("load_tokenizer: %s", text.error().c_str());
  auto cfg_text = read_file(dir + "/tokenizer_config.json", &exists);
  if (!cfg_text.ok()) return errorf("load_tokenizer: %s", cfg_text.error().c_str());

  auto tok = from_json(*text, *cfg_text, tpath);
  if (!tok.ok()) return tok;
  Impl& impl = *tok->impl_;
  impl.origin = dir;

  // Newer transformers keep the template in its own file.
  if (impl.chat_template.empty()) {
    auto jinja = read_file(dir + "/chat_template.jinja", &exists);
    if (!jinja.ok()) return errorf("load_tokenizer: %s", jinja.error().c_str());
    impl.chat_template = std::move(jinja.value());
  }
  // Stop ids from the model's configs.
  for (const char* name : {"config.json", "generation_config.json"}) {
    const std::string path = dir + "/" + name;
    auto c = read_file(path, &exists);
    if (!c.ok()) return errorf("load_tokenizer: %s", c.error().c_str());
    if (!exists) continue;
    auto j = parse_json(*c, path);
    if (!j.ok()) return errorf("load_tokenizer: %s", j.error().c_str());
    collect_ids(*j, "eos_token_id", impl.special_tokens.stop);
  }
  std::vector<int32_t>& stop = impl.special_tokens.stop;
  std::sort(stop.begin(), stop.end());
  stop.erase(std::unique(stop.begin(), stop.end()), stop.end());
  return tok;
}

// ---------------------------------------------------------------------------------------------
// Encoding

Status Tokenizer::Impl::encode_text(std::string&& text, bool first,
                                    std::vector<int32_t>& ids) const {
  if (pre.identity()) {
    model.tokenize(text, ids);
    return Status::Ok();
  }
  std::vector<tok::Word> words;
  words.push_back({std::move(text), first});
  PENSIEVE_TRY(pre.run(words));
  for (const tok::Word& w : words) model.tokenize(w.text, ids);
  return Status::Ok();
}

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text,
                                               const EncodeOptions& opts) const {
  const Impl& m = *impl_;
  std::string cleaned;
  if (!tok::utf8_is_valid(text)) {
    cleaned = tok::utf8_lossy(text);
    text = cleaned;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (opts.add_special_tokens) ids = m.prefix_ids;

  // 1. Added tokens with normalized=false, found in the raw text.
  std::vector<tok::Segment> segs;
  m.added.split(text, /*normalized_set=*/false, opts.special_as_text, segs);
  std::vector<tok::Segment> sub;
  for (const tok::Segment& seg : segs) {
    if (seg.id >= 0) {
      ids.push_back(seg.id);
      continue;
    }
    // 2. Each text segment is normalized on its own (so Phi-3's "▁" goes after every added token),
    // 3. then searched for normalized=true added tokens, 4. then pre-tokenized and BPE-encoded.
    std::string t(text.substr(seg.begin, seg.end - seg.begin));
    Status st = m.normalizer.normalize(t);
    if (!st.ok()) return errorf("encode: %s", st.error().c_str());
    sub.clear();
    m.added.split(t, /*normalized_set=*/true, opts.special_as_text, sub);
    for (const tok::Segment& s2 : sub) {
      if (s2.id >= 0) {
        ids.push_back(s2.id);
        continue;
      }
      st = m.encode_text(t.substr(s2.begin, s2.end - s2.begin), seg.begin == 0 && s2.begin == 0,
                         ids);
      if (!st.ok()) return errorf("encode: %s", st.error().c_str());
    }
  }
  if (opts.add_special_tokens) ids.insert(ids.end(), m.suffix_ids.begin(), m.suffix_ids.end());
  return ids;
}

// ---------------------------------------------------------------------------------------------
// Decoding

struct StreamDecoder::State {
  explicit State(const tok::Decoder* d) : dec(d) {}
  tok::DecodeState dec;
};

StreamDecoder::StreamDecoder(const Tokenizer& tok, bool skip_special)
    : tok_(&tok),
      skip_special_(skip_special),
      state_(std::make_unique<State>(&tok.impl_->decoder)) {}
StreamDecoder::StreamDecoder(StreamDecoder&&) noexcept = default;
StreamDecoder& StreamDecoder::operator=(StreamDecoder&&) noexcept = default;
StreamDecoder::~StreamDecoder() = default;

std::string StreamDecoder::push(int32_t id) {
  std::string out;
  const Tokenizer::Impl& m = *tok_->impl_;
  const std::string* s = m.token_string(id);
  if (!s) return out;  // no such token: nothing, like HF
  if (skip_special_ && tok_->is_special(id)) return out;
  state_->dec.push(*s, out);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  state_->dec.flush(out);
  state_->dec.reset();
  return out;
}

void StreamDecoder::reset() { state_->dec.reset(); }

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  StreamDecoder d(*this, skip_special);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  out += d.flush();
  return out;
}

// ---------------------------------------------------------------------------------------------
// Accessors

int32_t Tokenizer::vocab_size() const { return impl_->id_limit; }

std::string_view Tokenizer::id_to_token(int32_t id) const {
  const std::string* s = impl_->token_string(id);
  return s ? std::string_view(*s) : std::string_view();
}

int32_t Tokenizer::token_to_id(std::string_view token) const { return impl_->lookup(token); }

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < impl_->id_limit && impl_->special[id];
}

const SpecialTokens& Tokenizer::special_tokens() const { return impl_->special_tokens; }
const std::string& Tokenizer::bos_token() const { return impl_->bos_token; }
const std::string& Tokenizer::eos_token() const { return impl_->eos_token; }
const std::string& Tokenizer::chat_template_source() const { return impl_->chat_template; }
const std::string& Tokenizer::origin() const { return impl_->origin; }

}  // namespace pensieve
