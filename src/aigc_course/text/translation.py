"""English-to-Chinese data for the translation chapters: tokenizers, vocabularies, splits, batches.

Taught in part 3, "Sequence to sequence with attention" (3.2), and used in the practice chapter
"English to Chinese translation with attention" (5.4). The data are the Tatoeba sentence pairs of
:func:`aigc_course.data.load_en_zh` (CC BY 2.0 FR; keep the attribution of every pair).

1. Sentences become tokens and ids with :mod:`aigc_course.text.vocab` (English words,
   Chinese characters, a :class:`Vocab` with ``<pad>``, ``<bos>``, ``<eos>``, ``<unk>`` first).
2. :func:`split_pairs` makes a deterministic train / validation / test split (a seeded shuffle)
   and removes from validation and test every pair whose English sentence also occurs in training,
   so that the test measures translation of unseen sentences, not recall.
3. :func:`collate` pads a list of (source ids, target ids) into a batch: the decoder input starts
   with ``<bos>`` and the decoder target ends with ``<eos>`` (teacher forcing).

The Chinese side of Tatoeba mixes scripts: about a third of the pairs are written in traditional
characters. :func:`zh_script` detects the script from a list of frequent characters that differ
between the two; the course's recipe keeps the simplified (and undetermined) pairs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from aigc_course.text.vocab import BOS, EOS, PAD, UNK, Vocab, tokenize_en

# Frequent characters written differently in the two scripts, as "traditional simplified" pairs.
_T2S = """
們们 這这 個个 說说 來来 時时 會会 為为 國国 過过 對对 麼么 還还 裡里 沒没 嗎吗 問问 開开 學学 歡欢
買买 愛爱 車车 書书 見见 電电 話话 聽听 讓让 東东 氣气 長长 錢钱 點点 從从 現现 經经 給给 覺觉 樣样
應应 該该 頭头 間间 門门 無无 與与 發发 後后 幾几 實实 將将 動动 訴诉 認认 識识 歲岁 萬万 腦脑 戲戏
邊边 業业 處处 親亲 熱热 員员 寫写 讀读 飯饭 館馆 醫医 帶带 鐘钟 飛飞 機机 場场 題题 請请 謝谢 壞坏
貓猫 鳥鸟 魚鱼 馬马 紅红 綠绿 藍蓝 黃黄 顏颜 體体 離离 難难 記记 準准 備备 參参 結结 媽妈 兒儿 舊旧
陽阳 陰阴 風风 雲云 燈灯 筆笔 紙纸 褲裤 錯错 試试 課课 單单 簡简 終终 總总 計计 劃划 畫画 視视 臺台
灣湾 園园 區区 樓楼 層层 窮穷 貴贵 賣卖 錶表 鐵铁 銀银 極极 麗丽 歷历 義义 務务 報报 雜杂 誌志 專专
師师 選选 擇择 決决 條条 據据 證证 隻只 雙双 聲声 樂乐 藝艺 術术 節节 週周 禮礼 遊游 較较 強强 夠够
當当 鬧闹 討讨 厭厌 關关 係系 憶忆 夢梦 戰战 爭争 運运 漢汉 語语 詞词 譯译 湯汤 誤误 帳帐 號号 刪删
樹树 預预 餓饿 兩两 際际 貝贝 負负 費费 賽赛 資资 質质 轉转 輕轻 輛辆 載载 輸输 農农 遠远 連连 進进
達达 遲迟 適适 鄰邻 閱阅 閒闲 隊队 陳陈 險险 雖虽 雞鸡 須须 領领 顧顾 飲饮 養养 餅饼 騎骑 驗验 髮发
鳳凤 麥麦 齊齐 齒齿 龍龙 龜龟 嘗尝 圖图 團团 壓压 夥伙 奮奋 嬰婴 孫孙 寧宁 寶宝 導导 屬属 島岛 幣币
幫帮 廣广 廳厅 張张 彈弹 態态 憂忧 懷怀 戀恋 擔担 擁拥 擠挤 數数 敵敌 斷断 檢检 權权 歸归 殺杀 況况
淚泪 淨净 溫温 滿满 漲涨 濕湿 災灾 煙烟 爺爷 牆墙 獎奖 獨独 獲获 環环 產产 畢毕 異异 瘋疯 療疗 盡尽
監监 盤盘 確确 種种 穩稳 競竞 築筑 簽签 糧粮 約约 紀纪 純纯 級级 細细 組组 絕绝 統统 絲丝 綁绑 維维
網网 線线 練练 縣县 績绩 繼继 續续 罰罚 聯联 職职 腳脚 臉脸 興兴 舉举 艱艰 莊庄 華华 葉叶 蓋盖 蘋苹
蘭兰 蟲虫 衛卫 補补 裝装 規规 觀观 訂订 許许 設设 診诊 詳详 誰谁 調调 談谈 論论 諾诺 講讲 謊谎 護护
變变 豐丰 貨货 貧贫 責责 貼贴 賀贺 賓宾 趕赶 跡迹 踐践 軍军 軟软 輔辅 辦办 郵邮 鄉乡 釣钓 針针 銷销
鋼钢 錄录 鍵键 鎖锁 鏡镜 閃闪 閉闭 陸陆 隨随 靜静 韓韩 頁页 順顺 頓顿 顯显 飽饱 飾饰 駕驾 驚惊 鹽盐
黨党 誕诞 聖圣 殺杀 傳传 僅仅 價价 優优 億亿 兇凶 勞劳 勝胜 勵励 勸劝 華华 協协 廠厂 歷历 壯壮 夠够
""".split()
TRADITIONAL_ONLY = frozenset(pair[0] for pair in _T2S)
# Some simplified forms are also ordinary traditional characters (后 queen, 里 mile, 只 only...).
SIMPLIFIED_ONLY = frozenset(pair[1] for pair in _T2S) - frozenset("表只周系后里台划志云几游凶")


def zh_script(text: str) -> str:
    """'traditional', 'simplified', 'mixed' or 'unknown' (no telling character) for a Chinese text."""
    trad = any(c in TRADITIONAL_ONLY for c in text)
    simp = any(c in SIMPLIFIED_ONLY for c in text)
    return {(True, False): "traditional", (False, True): "simplified", (True, True): "mixed"}.get(
        (trad, simp), "unknown")


@dataclass
class Split:
    """Train / validation / test pairs and how many held-out duplicates were removed."""

    train: list
    val: list
    test: list
    removed_duplicates: int
    removed_traditional: int = 0


def split_pairs(pairs, n_test: int = 1000, n_val: int = 500, seed: int = 0, max_en_words: int | None = None,
                simplified_only: bool = False) -> Split:
    """Deterministic split of sentence pairs (a shuffle seeded by ``seed``).

    1. keep the pairs with at most ``max_en_words`` English tokens (if given) and, if
       ``simplified_only``, drop the pairs whose Chinese is traditional or mixed (:func:`zh_script`);
    2. shuffle with ``random.Random(seed)`` and cut ``n_test`` then ``n_val`` pairs off the front;
    3. remove from test and validation the pairs whose (lower-cased) English sentence also occurs
       in training: Tatoeba often has several translations of one sentence.
    """
    if n_test < 1 or n_val < 0:
        raise ValueError(f"n_test must be >= 1 and n_val >= 0, got {n_test} and {n_val}.")
    kept = [p for p in pairs if max_en_words is None or len(tokenize_en(p.en)) <= max_en_words]
    n_trad = 0
    if simplified_only:
        before = len(kept)
        kept = [p for p in kept if zh_script(p.zh) not in ("traditional", "mixed")]
        n_trad = before - len(kept)
    if len(kept) <= n_test + n_val:
        raise ValueError(f"Only {len(kept)} pairs left after filtering: fewer than n_test + n_val + 1.")
    order = list(range(len(kept)))
    random.Random(seed).shuffle(order)
    test = [kept[i] for i in order[:n_test]]
    val = [kept[i] for i in order[n_test : n_test + n_val]]
    train = [kept[i] for i in order[n_test + n_val :]]
    seen = {p.en.lower() for p in train}
    test_clean = [p for p in test if p.en.lower() not in seen]
    val_clean = [p for p in val if p.en.lower() not in seen]
    removed = len(test) - len(test_clean) + len(val) - len(val_clean)
    return Split(train, val_clean, test_clean, removed, n_trad)


def encode_pairs(pairs, src_vocab: Vocab, tgt_vocab: Vocab) -> list[tuple[list[int], list[int]]]:
    """(English ids, Chinese ids) of every pair, without specials (``collate`` adds them)."""
    return [(src_vocab.encode(p.en), tgt_vocab.encode(p.zh)) for p in pairs]


def collate(examples: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
    """Pad a list of (source ids, target ids) into a batch for teacher forcing.

    Returns ``src`` (B, S) padded with <pad>=0, ``src_len`` (B,), ``tgt_in`` (B, T) = <bos> y,
    ``tgt_out`` (B, T) = y <eos> (padded with 0, which the loss ignores).
    """
    if not examples:
        raise ValueError("collate got an empty list of examples.")
    if any(len(s) == 0 for s, _ in examples):
        raise ValueError("A source sentence has no tokens; filter empty sentences first.")
    B = len(examples)
    S = max(len(s) for s, _ in examples)
    T = max(len(t) for _, t in examples) + 1
    src = torch.full((B, S), PAD, dtype=torch.long)
    tgt_in = torch.full((B, T), PAD, dtype=torch.long)
    tgt_out = torch.full((B, T), PAD, dtype=torch.long)
    for i, (s, t) in enumerate(examples):
        src[i, : len(s)] = torch.tensor(s)
        tgt_in[i, : len(t) + 1] = torch.tensor([BOS] + t)
        tgt_out[i, : len(t) + 1] = torch.tensor(t + [EOS])
    src_len = torch.tensor([len(s) for s, _ in examples])
    return {"src": src, "src_len": src_len, "tgt_in": tgt_in, "tgt_out": tgt_out}


def batch_fn(examples, batch_size: int, seed: int = 0):
    """``step -> batch``: epochs of shuffled examples, each batch of similar source lengths.

    Examples are shuffled, cut into chunks of 50 batches, sorted by length inside a chunk (less
    padding, so faster steps) and the batches shuffled again. Deterministic for a given seed.
    """
    if batch_size < 1 or len(examples) < batch_size:
        raise ValueError(f"Need 1 <= batch_size <= {len(examples)} examples, got {batch_size}.")
    rng = random.Random(seed)
    batches: list = []

    def refill():
        order = list(range(len(examples)))
        rng.shuffle(order)
        chunk = 50 * batch_size
        new = []
        for c in range(0, len(order), chunk):
            part = sorted(order[c : c + chunk], key=lambda i: len(examples[i][0]))
            new += [part[b : b + batch_size] for b in range(0, len(part) - batch_size + 1, batch_size)]
        rng.shuffle(new)
        batches.extend(new)

    def get(step: int):
        if not batches:
            refill()
        return collate([examples[i] for i in batches.pop()])

    return get


def translate(model, sentences, src_vocab: Vocab, tgt_vocab: Vocab, beam_size: int = 1, max_len: int = 40,
              length_penalty: float = 1.0) -> list[str]:
    """Translate English strings with a :class:`~aigc_course.models.seq2seq.Seq2Seq` (greedy if
    ``beam_size == 1``); returns Chinese strings."""
    if isinstance(sentences, str):
        raise ValueError("translate expects a list of sentences; wrap a single one in a list.")
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(sentences), 128):
        ids = [src_vocab.encode(s) or [UNK] for s in sentences[start : start + 128]]
        batch = collate([(s, []) for s in ids])
        src, src_len = batch["src"].to(device), batch["src_len"].to(device)
        if beam_size == 1:
            tokens, _ = model.greedy_decode(src, src_len, max_len=max_len)
        else:
            tokens = model.beam_search(src, src_len, beam_size=beam_size, max_len=max_len,
                                       length_penalty=length_penalty)[0]
        out += [tgt_vocab.decode(t) for t in tokens]
    return out
