"""`just bench`: genolens and PyTorch + transformers, side by side, on the same weights and inputs.

Both sides run each case in a fresh process (a warm-up, then the timed run); the driver alternates
them for --rounds rounds after a discarded warm-up round, with the same thread count, and measures
each process's peak RSS (its own VmHWM). Results: reports/bench/bench.parquet (case, implementation,
round, seconds, peak_rss_bytes) and reports/bench/bench.md (medians and PyTorch / genolens ratio).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = [
    "forward:bert-base:16x200",
    "forward:bert-base:4x512",
    "forward:mini:16x200",
    "forward:default:16x200",
    "backward:bert-base:16x200",
    "backward:bert-base:4x512",
    "backward:mini:16x200",
    "train-step:mini:16x200",
    "backward:default:16x200",
    "train-step:default:16x200",
    "embed:mini:1000",
    "embed:mini:10000",
    "patch-sweep:mini:2x200",
    "backward:mini:64x200",
    "attnlrp:mini:64x200",
    "ig:mini:16x200",
    "ism:mini:10x250",
    "tomtom:jaspar:1000",
    "sae-train:mini:64x300",
    "mlm-forward:dnabert2-117m:16x200",
    "mlm-forward:dnabert2-117m:4x512",
    "mlm-forward:nt-v2-50m:16x200",
    "mlm-forward:nt-v2-50m:4x512",
    "gemm:bert-base:16x200",
    "gemm:mini:16x200",
    "gemm:default:16x200",
]
# Cases whose reference runs in the .venv-lxt environment (LXT 2.1 and captum need
# transformers 4.46; `just attribution-fixtures` or `just bench` builds it).
LXT_KINDS = ("attnlrp", "ig")
# Cases whose reference is DNABERT-2's hub code or NT v2's SwiGLU ESM (transformers 4.x, in
# .venv-families: `just family-fixtures`); DNABERT-2's needs GENOLENS_DNABERT2_CODE, a local copy
# of the zhihan1996/DNABERT-2-117M hub repository.
FAMILY_KINDS = ("mlm-forward",)
# (layers, hidden, MLP width, heads) of the BERT-layout bench shapes (src/bench.rs BenchShape).
SHAPES = {"bert-base": (12, 768, 3072, 12), "mini": (6, 256, 1024, 8), "default": (6, 128, 512, 4)}
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "families"
REPO = Path(__file__).resolve().parents[2]


def bench_ids(batch, tokens):
    """Same formula as genolens::bench::bench_ids."""
    return [[2] + [5 + ((row * 7919 + t * 104729) % 4096) for t in range(1, tokens - 1)] + [3] for row in range(batch)]


def bench_sequence(index, length):
    """Same formula as genolens::bench::bench_sequence."""
    return "".join("ACGT"[(index * 7919 + p * 104729 + p * p) % 4] for p in range(length))


def from_folder(cls, folder):
    """cls (a BERT class) with the folder's weights. transformers 4.x (the .venv-lxt cases) refuses
    safetensors files without {"format": "pt"} metadata, which candle does not write, so the state
    dict is loaded directly (strict: every tensor must match)."""
    from safetensors.torch import load_file
    from transformers import BertConfig

    config = BertConfig.from_pretrained(folder)
    model = cls._from_config(config, attn_implementation="eager")
    model.load_state_dict(load_file(Path(folder) / "model.safetensors"), strict=True)
    return model.eval()


def family_bench_ids(shape, batch, tokens):
    """Same formula as genolens::bench::family_bench_ids."""
    def ident(row, t, offset, count):
        return offset + (row * 7919 + t * 104729) % count
    if shape == "dnabert2-117m":
        return [[1] + [ident(r, t, 5, 4091) for t in range(1, tokens - 1)] + [2] for r in range(batch)]
    return [[3] + [ident(r, t, 6, 4096) for t in range(1, tokens)] for r in range(batch)]


def family_model(shape, root):
    """The reference model of a family shape, with seeded random weights that are written once in
    the hub's layout under root/<shape>-mlm (genolens reads the same files)."""
    import shutil

    import torch
    import transformers

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_family_fixtures import SwiGlu, import_dnabert2

    folder = Path(root) / f"{shape}-mlm"
    torch.manual_seed(0)
    if shape == "dnabert2-117m":
        code = os.environ.get("GENOLENS_DNABERT2_CODE")
        if not code:
            raise SystemExit("mlm-forward:dnabert2-117m needs GENOLENS_DNABERT2_CODE (a local copy of the hub repo)")
        bert_layers = import_dnabert2(Path(code))
        config_json = json.loads((FIXTURES / "dnabert2-mlm" / "config.json").read_text())
        config_json.update(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                           num_hidden_layers=12, vocab_size=4096)
        config = transformers.BertConfig(**{k: v for k, v in config_json.items() if k not in ("auto_map", "_name_or_path")})
        config.alibi_starting_size = 512
        model = bert_layers.BertForMaskedLM(config).eval()
        bert_layers.flash_attn_qkvpacked_func = None
        if not (folder / "pytorch_model.bin").exists():
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), folder / "pytorch_model.bin")
            (folder / "config.json").write_text(json.dumps(config_json, indent=2))
            shutil.copy(FIXTURES / "dnabert2-mlm" / "tokenizer.json", folder / "tokenizer.json")
        model.load_state_dict(torch.load(folder / "pytorch_model.bin"))
        return model, 3
    config_json = json.loads((FIXTURES / "nt-v2-mlm" / "config.json").read_text())
    config_json.update(hidden_size=512, intermediate_size=2048, num_attention_heads=16,
                       num_hidden_layers=12, max_position_embeddings=2050)
    config = transformers.EsmConfig(**{k: v for k, v in config_json.items() if k not in ("auto_map", "architectures")})
    config._attn_implementation = "eager"
    model = transformers.EsmForMaskedLM(config)
    for layer in model.esm.encoder.layer:
        layer.intermediate = SwiGlu(config.hidden_size, config.intermediate_size)
        layer.output.dense = torch.nn.Linear(config.intermediate_size, config.hidden_size, bias=False)
    model.eval()
    if not (folder / "model.safetensors").exists():
        from safetensors.torch import save_file
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(config_json, indent=2))
        shutil.copy(FIXTURES / "nt-v2-mlm" / "vocab.txt", folder / "vocab.txt")
    from safetensors.torch import load_file
    model.load_state_dict(load_file(folder / "model.safetensors"), strict=False)
    return model, 1


def masked_positions(tokens):
    return [t for t in range(1, tokens - 1) if t % 7 == 3]


def tomtom_seconds(size, root):
    """memelite's tomtom with its defaults (Euclidean columns, both strands, 100 score bins, target
    columns hashed to 100 bins): `size` queries against JASPAR vertebrates, after a warm-up."""
    import numpy
    from memelite.io import read_meme
    from memelite.tomtom import tomtom

    def read(name):
        return [numpy.asarray(m, dtype=numpy.float64) for m in read_meme(str(root / name)).values()]

    queries, targets = read("tomtom-queries.meme")[:int(size)], read("jaspar-vertebrates.meme")
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    tomtom(queries, targets, n_jobs=threads)
    start = time.perf_counter()
    tomtom(queries, targets, n_jobs=threads)
    return time.perf_counter() - start


def worker(case, root):
    if case.startswith("tomtom:"):
        seconds = tomtom_seconds(case.split(":")[2], Path(root))
        print(json.dumps({"case": case, "seconds": seconds, "peak_rss_bytes": peak_rss_bytes()}))
        return
    import torch
    import torch.nn.functional as F
    from transformers import BertForMaskedLM, BertForSequenceClassification

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    kind, shape, size = case.split(":")
    root = Path(root)
    if kind == "mlm-forward":
        model, pad = family_model(shape, root)
        batch, tokens = map(int, size.split("x"))
        ids = torch.tensor(family_bench_ids(shape, batch, tokens))
        mask = torch.ones_like(ids)

        def work():
            with torch.no_grad():
                logits = model(input_ids=ids, attention_mask=mask).logits
            float(logits.sum())

        work()
        start = time.perf_counter()
        work()
        seconds = time.perf_counter() - start
        print(json.dumps({"case": case, "seconds": seconds, "peak_rss_bytes": peak_rss_bytes()}))
        return

    def timed_twice(work):
        work()
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    if kind == "gemm":
        # The forward's dense products alone (genolens's `gemm` case): per layer four
        # hidden x hidden linears and the MLP's two, on batch x tokens rows.
        layers, h, f, _ = SHAPES[shape]
        batch, tokens = map(int, size.split("x"))
        rows = batch * tokens

        def values(count, seed):
            i = torch.arange(count, dtype=torch.int64)
            return ((i * 7919 + seed * 104729) % 2000).to(torch.float32) / 1000.0 - 1.0

        x = values(rows * h, 1).reshape(rows, h)
        square, up, down = values(h * h, 2).reshape(h, h), values(f * h, 3).reshape(f, h), values(h * f, 4).reshape(h, f)
        bias_h, bias_f = values(h, 5), values(f, 6)

        def work():
            total = 0.0
            with torch.no_grad():
                for _ in range(layers):
                    for _ in range(4):
                        total += float(F.linear(x, square, bias_h)[0, 0])
                    hidden = F.linear(x, up, bias_f)
                    total += float(F.linear(hidden, down, bias_h)[0, 0])
            return total

        seconds = timed_twice(work)
        print(json.dumps({"case": case, "seconds": seconds, "peak_rss_bytes": peak_rss_bytes()}))
        return

    if kind in ("forward", "backward"):
        model = BertForSequenceClassification.from_pretrained(root / f"{shape}-cls", attn_implementation="eager").eval()
        batch, tokens = map(int, size.split("x"))
        ids = torch.tensor(bench_ids(batch, tokens))
        mask = torch.ones_like(ids)
        types = torch.zeros_like(ids)
        if kind == "forward":
            def work():
                with torch.no_grad():
                    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types,
                                output_hidden_states=True, output_attentions=True)
                out.logits.tolist()
        else:
            def work():
                embedding = model.bert.embeddings.word_embeddings(ids).detach().requires_grad_(True)
                out = model(inputs_embeds=embedding, attention_mask=mask, token_type_ids=types)
                out.logits[:, 1].sum().backward()
                (embedding.grad * embedding).sum(-1).tolist()
        seconds = timed_twice(work)
    elif kind == "attnlrp":
        # LXT's efficient BERT: the AttnLRP relevance of class 1 per token, a batch at once.
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from lxt_bert import attnlrp_bert

        modeling_bert, _ = attnlrp_bert()
        model = from_folder(modeling_bert.BertForSequenceClassification, root / f"{shape}-cls")
        batch, tokens = map(int, size.split("x"))
        ids = torch.tensor(bench_ids(batch, tokens))
        mask, types = torch.ones_like(ids), torch.zeros_like(ids)
        positions = torch.arange(tokens).expand_as(ids)

        def work():
            x = model.bert.embeddings.word_embeddings(ids).detach().requires_grad_(True)
            logits = model(inputs_embeds=x, attention_mask=mask, token_type_ids=types, position_ids=positions).logits
            logits[:, 1].sum().backward()
            (x * x.grad).sum(-1).tolist()
        seconds = timed_twice(work)
    elif kind == "ig":
        # captum's IntegratedGradients on inputs_embeds, 64 Gauss-Legendre steps, zero baseline,
        # internal batching of 8 path points per pass (as genolens).
        from captum.attr import IntegratedGradients

        model = from_folder(BertForSequenceClassification, root / f"{shape}-cls")
        batch, tokens = map(int, size.split("x"))
        ids = torch.tensor(bench_ids(batch, tokens))
        mask, types = torch.ones_like(ids), torch.zeros_like(ids)

        def forward(inputs_embeds):
            repeat = inputs_embeds.shape[0] // batch
            return model(inputs_embeds=inputs_embeds, attention_mask=mask.repeat(repeat, 1),
                         token_type_ids=types.repeat(repeat, 1)).logits

        ig = IntegratedGradients(forward)

        def work():
            x = model.bert.embeddings.word_embeddings(ids).detach()
            attribution = ig.attribute(x, baselines=torch.zeros_like(x), target=1, n_steps=64,
                                       method="gausslegendre", internal_batch_size=8 * batch)
            attribution.sum(-1).tolist()
        seconds = timed_twice(work)
    elif kind == "ism":
        # The tangermeme-style loop: per sequence and position, one batched forward of the three
        # substituted sequences (re-tokenised), Δ of class 1's logit against the reference.
        model = BertForSequenceClassification.from_pretrained(root / f"{shape}-cls", attn_implementation="eager").eval()
        vocab = {token: index for index, token in enumerate((root / f"{shape}-cls" / "vocab.txt").read_text().split("\n"))}
        count, length = map(int, size.split("x"))

        def encode(sequences):
            return torch.tensor([[2] + [vocab.get(s[i : i + 6], 1) for i in range(len(s) - 5)] + [3] for s in sequences])

        def logit(sequences):
            ids = encode(sequences)
            return model(input_ids=ids, attention_mask=torch.ones_like(ids), token_type_ids=torch.zeros_like(ids)).logits[:, 1]

        start = time.perf_counter()
        with torch.no_grad():
            for index in range(count):
                sequence = bench_sequence(index, length)
                reference = logit([sequence])[0]
                deltas = []
                for p, observed in enumerate(sequence):
                    variants = [sequence[:p] + b + sequence[p + 1 :] for b in "ACGT" if b != observed]
                    deltas.append((logit(variants) - reference).tolist())
                assert len(deltas) == length
        seconds = time.perf_counter() - start
    elif kind == "patch-sweep":
        # The TransformerLens-style loop: one full forward of the corrupt input per (layer,
        # position) cell, a forward pre-hook writing the clean run's layer input at that position.
        model = BertForSequenceClassification.from_pretrained(root / f"{shape}-cls", attn_implementation="eager").eval()
        pairs, tokens = map(int, size.split("x"))
        clean_ids = torch.tensor(bench_ids(pairs, tokens))
        corrupt_ids = clean_ids.clone()
        middle = tokens // 2
        corrupt_ids[:, middle] = 5 + (corrupt_ids[:, middle] - 5 + 1) % 4096
        layers = model.config.num_hidden_layers

        def work():
            with torch.no_grad():
                for row in range(pairs):
                    clean, corrupt = clean_ids[row : row + 1], corrupt_ids[row : row + 1]
                    stored = model.bert(input_ids=clean, output_hidden_states=True).hidden_states
                    cells = []
                    for layer in range(layers):
                        for position in range(tokens):
                            def hook(module, args, kwargs, layer=layer, position=position):
                                hidden = (args[0] if args else kwargs["hidden_states"]).clone()
                                hidden[:, position] = stored[layer][:, position]
                                if args:
                                    return (hidden,) + tuple(args[1:]), kwargs
                                kwargs = dict(kwargs)
                                kwargs["hidden_states"] = hidden
                                return args, kwargs
                            handle = model.bert.encoder.layer[layer].register_forward_pre_hook(hook, with_kwargs=True)
                            cells.append(model.bert(input_ids=corrupt).last_hidden_state[0, 0])
                            handle.remove()
                    torch.stack(cells).tolist()
        seconds = timed_twice(work)
    elif kind == "train-step":
        # Dropout off on both sides (genolens trains without it in this benchmark).
        model = BertForMaskedLM.from_pretrained(root / f"{shape}-mlm", attn_implementation="eager").eval()
        batch, tokens = map(int, size.split("x"))
        ids = torch.tensor(bench_ids(batch, tokens))
        positions = masked_positions(tokens)
        labels = ids[:, positions].reshape(-1)
        masked = ids.clone()
        masked[:, positions] = 4
        flat = torch.tensor([row * tokens + p for row in range(batch) for p in positions])
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, weight_decay=0.01)

        def work():
            optimizer.zero_grad()
            logits = model(input_ids=masked, attention_mask=torch.ones_like(ids)).logits
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1])[flat], labels)
            loss.backward()
            optimizer.step()
            loss.item()
        seconds = timed_twice(work)
    elif kind == "embed":
        import pyarrow as pa
        import pyarrow.parquet as pq

        model = BertForSequenceClassification.from_pretrained(root / f"{shape}-cls", attn_implementation="eager").eval()
        vocab = {token: index for index, token in enumerate((root / f"{shape}-cls" / "vocab.txt").read_text().split("\n"))}
        out = root / f"embed-out-torch-{os.getpid()}.parquet"
        start = time.perf_counter()
        records = []
        for line in (root / f"sequences-{size}.fa").read_text().splitlines():
            if line.startswith(">"):
                records.append([line[1:], ""])
            else:
                records[-1][1] += line
        writer = None
        for first in range(0, len(records), 16):
            chunk = records[first : first + 16]
            ids = torch.tensor([[2] + [vocab.get(s[i : i + 6], 1) for i in range(len(s) - 5)] + [3] for _, s in chunk])
            with torch.no_grad():
                cls = model.bert(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[:, 0].numpy()
            rows = {
                "sequence_index": [first + r for r in range(len(chunk)) for _ in range(cls.shape[1])],
                "sequence_id": [name for name, _ in chunk for _ in range(cls.shape[1])],
                "dim": [d for _ in chunk for d in range(cls.shape[1])],
                "value": cls.reshape(-1),
            }
            table = pa.table(rows)
            writer = writer or pq.ParquetWriter(out, table.schema)
            writer.write_table(table)
        writer.close()
        seconds = time.perf_counter() - start
        out.unlink()
    elif kind == "sae-train":
        # SAELens's standard training SAE (ReLU; L1 on f·‖W_dec‖, summed-squared-error loss) with
        # Adam at lr 1e-3: `steps` steps of `batch` rows of the shape's hidden width, 8× latents,
        # rows drawn in a shuffled order from the same deterministic matrix genolens trains on.
        batch, steps = map(int, size.split("x"))
        d = {"default": 128, "mini": 256, "bert-base": 768}[shape]
        m = 8 * d
        x = torch.tensor(sae_rows(batch * steps, d))
        generator = torch.Generator().manual_seed(0)
        w_dec = torch.nn.Parameter(torch.nn.functional.normalize(torch.randn(m, d, generator=generator), dim=1))
        w_enc = torch.nn.Parameter(w_dec.detach().t().clone())
        b_enc = torch.nn.Parameter(torch.zeros(m))
        b_dec = torch.nn.Parameter(x.mean(0))
        optimizer = torch.optim.Adam([w_enc, b_enc, w_dec, b_dec], lr=1e-3)

        def work():
            for index in torch.randperm(x.shape[0], generator=generator).split(batch):
                rows = x[index]
                f = torch.relu((rows - b_dec) @ w_enc + b_enc)
                x_hat = f @ w_dec + b_dec
                loss = (x_hat - rows).pow(2).sum(-1).mean() + 0.2 * (f * w_dec.norm(dim=1)).sum(-1).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        seconds = timed_twice(work)
    else:
        raise SystemExit(f"unknown case {case}")
    print(json.dumps({"case": case, "seconds": seconds, "peak_rss_bytes": peak_rss_bytes()}))


def sae_rows(n, d):
    """Same formula as genolens::bench::sae_rows: deterministic rows in [-1, 1)."""
    return [[((r * 7919 + j * 104729 + r * j) % 2000) / 1000.0 - 1.0 for j in range(d)] for r in range(n)]


def peak_rss_bytes():
    """VmHWM of this process. (wait4's ru_maxrss of a child forked from a large parent includes
    the parent's pre-exec RSS, so each worker reports its own high-water mark instead.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def run_one(implementation, case, root, threads, blas=None):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), BENCH_THREADS=str(threads))
    if implementation == "genolens-blas":
        env["GENOLENS_BLAS"] = blas
    if implementation in ("genolens", "genolens-blas"):
        command = [str(REPO / "target/release/genolens-bench"), "run", "--root", str(root), "--case", case]
    else:
        python = sys.executable
        if case.split(":")[0] in FAMILY_KINDS:
            python = str(REPO / ".venv-families/bin/python")
            if not Path(python).exists():
                raise SystemExit(f"{case} needs .venv-families: run `just family-fixtures DIR` once")
        if case.split(":")[0] in LXT_KINDS:
            python = str(REPO / ".venv-lxt/bin/python")
            if not Path(python).exists():
                raise SystemExit(f"{case} needs .venv-lxt (LXT and captum): run `just attribution-fixtures` once")
        command = [python, __file__, "worker", "--case", case, "--root", str(root)]
    process = subprocess.run(command, stdout=subprocess.PIPE, env=env)
    if process.returncode != 0:
        raise SystemExit(f"{implementation} {case} failed (status {process.returncode})")
    record = json.loads(process.stdout.decode().strip().splitlines()[-1])
    return {"case": case, "implementation": implementation, "seconds": record["seconds"],
            "peak_rss_bytes": record["peak_rss_bytes"], "matmul": record.get("matmul", "")}


def drive(args):
    from importlib.metadata import version

    import pyarrow as pa
    import pyarrow.parquet as pq

    root = Path(args.root)
    subprocess.run([str(REPO / "target/release/genolens-bench"), "make-inputs", "--root", str(root)], check=True)
    cases = args.cases.split(",") if args.cases else CASES
    for case in cases:
        kind, shape, _ = case.split(":")
        if kind in FAMILY_KINDS and "pytorch" in args.implementations.split(","):
            # The reference side writes the weights in the hub's layout first.
            run_one("pytorch", f"{kind}:{shape}:1x8", root, args.threads)
    records = []
    implementations = args.implementations.split(",") + (["genolens-blas"] if args.blas else [])
    for case in cases:
        first_round = 0 if args.warmup_round else 1
        for round_index in range(first_round, args.rounds + 1):  # round 0 warms caches, discarded
            # Each implementation goes first in turn.
            shift = round_index % len(implementations)
            order = implementations[shift:] + implementations[:shift]
            for implementation in order:
                record = run_one(implementation, case, root, args.threads, args.blas)
                record["round"] = round_index
                print(json.dumps(record), flush=True)
                if round_index > 0:
                    records.append(record)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(records)
    machine = machine_description()
    matmul = sorted({r["matmul"] for r in records if r["implementation"] == "genolens"}) or ["not run"]
    blas = sorted({r["matmul"] for r in records if r["implementation"] == "genolens-blas"})
    metadata = {"matmul": "; ".join(matmul), "threads": str(args.threads), "torch": version("torch"), "transformers": version("transformers"),
                "machine": platform.processor() or platform.machine(), "cpus": str(os.cpu_count()),
                "cpu_model": machine["model"], "isa": machine["isa"], "date": machine["date"],
                "commit": machine["commit"]}
    pq.write_table(table.replace_schema_metadata({f"bench.{k}": v for k, v in metadata.items()}), out / "bench.parquet")
    lines = [
        f"{machine['model']} ({machine['isa']}; {os.cpu_count()} CPUs), {machine['date']}, commit {machine['commit']}.",
        f"Medians of {args.rounds} alternated rounds, {args.threads} threads, torch {version('torch')}, "
        f"transformers {version('transformers')}; ratio = PyTorch time / genolens time (> 1: genolens faster).",
        f"genolens's matrix products: {'; '.join(matmul)} (`GENOLENS_BLAS`)"
        + (f"; genolens + BLAS: {'; '.join(blas)}." if blas else "."),
        "",
        "| case | genolens s | PyTorch s | ratio | genolens peak RSS MiB | PyTorch peak RSS MiB |"
        + (" genolens + BLAS s | ratio with BLAS |" if blas else ""),
        "|---|---|---|---|---|---|" + ("---|---|" if blas else ""),
    ]
    for case in cases:
        def median(implementation, key):
            values = [r[key] for r in records if r["case"] == case and r["implementation"] == implementation]
            return statistics.median(values) if values else float("nan")
        ours, theirs = median("genolens", "seconds"), median("pytorch", "seconds")
        line = (f"| {case} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f} | "
                f"{median('genolens', 'peak_rss_bytes') / 2**20:.0f} | {median('pytorch', 'peak_rss_bytes') / 2**20:.0f} |")
        if blas:
            with_blas = median("genolens-blas", "seconds")
            line += f" {with_blas:.3f} | {theirs / with_blas:.2f} |"
        lines.append(line)
    lines += physical_limit(cases, records)
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def machine_description():
    """CPU model, the vector ISA that matters for GEMM, today's date (UTC) and the commit."""
    model, flags, family = platform.processor() or platform.machine(), set(), None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "cpu family":
                family = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    isa = [name for name, flag in [("AVX2", "avx2"), ("FMA", "fma"), ("AVX-512F", "avx512f"),
                                   ("AVX-512 BF16", "avx512_bf16"), ("AMX", "amx_tile")] if flag in flags]
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    date = time.strftime("%Y-%m-%d", time.gmtime())
    if family:
        # VMs often hide the model name ("AMD EPYC"): the family tells Zen 5 (26) from Zen 4 (25).
        model = f"{model} (family {family})"
    return {"model": model, "isa": ", ".join(isa) or "no AVX2", "date": date, "commit": commit}


def dense_flops(shape, rows):
    """FLOPs of the forward's dense products (the `gemm` case): per layer q, k, v, o and the MLP."""
    layers, h, f, _ = SHAPES[shape]
    return layers * 2 * rows * (4 * h * h + 2 * h * f)


def physical_limit(cases, records):
    """The best GEMM rate measured in this run (either side's `gemm` case) and each forward's
    FLOP rate as a fraction of it (forward FLOPs: the dense products plus q·kᵀ and pattern·v)."""
    def median(case, implementation):
        values = [r["seconds"] for r in records if r["case"] == case and r["implementation"] == implementation]
        return statistics.median(values) if values else None

    lines = []
    for case in cases:
        kind, shape, size = case.split(":")
        if kind != "gemm" or shape not in SHAPES:
            continue
        batch, tokens = map(int, size.split("x"))
        layers, h, _, _ = SHAPES[shape]
        flops = dense_flops(shape, batch * tokens)
        rates = {i: flops / s / 1e9 for i in ("genolens", "genolens-blas", "pytorch") if (s := median(case, i))}
        if not rates:
            continue
        best = max(rates.values())
        if not lines:
            lines += ["", "Physical limit: the forward's dense products alone (`gemm` cases), and each forward "
                      "(all hidden states and patterns captured) as a fraction of the best GEMM rate.", "",
                      "| shape, rows | genolens GEMM GF/s | genolens + BLAS GEMM GF/s | PyTorch GEMM GF/s | "
                      "genolens forward GF/s | fraction of best GEMM | PyTorch forward GF/s |",
                      "|---|---|---|---|---|---|---|"]
        forward = f"forward:{shape}:{size}"
        attention = layers * 4 * batch * tokens * tokens * h
        # genolens's faster backend (built-in GEMM or BLAS) against the best GEMM rate of any side.
        ours = min((s for s in (median(forward, "genolens"), median(forward, "genolens-blas")) if s), default=None)
        theirs = median(forward, "pytorch")
        ours_rate = (flops + attention) / ours / 1e9 if ours else float("nan")
        theirs_rate = (flops + attention) / theirs / 1e9 if theirs else float("nan")
        lines.append(f"| {shape}, {batch * tokens} | {rates.get('genolens', float('nan')):.0f} | "
                     f"{rates.get('genolens-blas', float('nan')):.0f} | {rates.get('pytorch', float('nan')):.0f} | {ours_rate:.0f} | {ours_rate / best:.0%} | "
                     f"{theirs_rate:.0f} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    drive_parser = sub.add_parser("drive")
    drive_parser.add_argument("--rounds", type=int, default=5)
    drive_parser.add_argument("--threads", type=int, default=2)
    drive_parser.add_argument("--root", default=str(REPO / "target/bench"))
    drive_parser.add_argument("--out", default=str(REPO / "reports/bench"))
    drive_parser.add_argument("--cases", default="", help="comma-separated case ids (default: all)")
    drive_parser.add_argument("--implementations", default="genolens,pytorch")
    drive_parser.add_argument("--blas", default=None,
                              help="also run genolens with GENOLENS_BLAS set to this library (a third "
                                   "implementation, `genolens-blas`, alternated with the others)")
    drive_parser.add_argument("--no-warmup-round", dest="warmup_round", action="store_false",
                              help="skip the discarded round 0 (each process still warms up internally)")
    worker_parser = sub.add_parser("worker")
    worker_parser.add_argument("--case", required=True)
    worker_parser.add_argument("--root", required=True)
    args = parser.parse_args()
    if args.command == "drive":
        drive(args)
    else:
        worker(args.case, args.root)


if __name__ == "__main__":
    main()
