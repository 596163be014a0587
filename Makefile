# symbench: `make bench-rbc` and `make test` are all a new machine needs.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SYMBENCH := $(VENV)/bin/symbench
PRESET ?= cpu
DATA ?= data

.PHONY: setup lint test test-fast bench-rbc data-rbc sweep-rbc bench-smoke data-smoke bench-alpha data-levels bench-levels data-heat bench-heat data-ocean bench-ocean data-jetflow bench-jetflow bench-nbody bench-digits bench-discovery bench-sr3d leaderboard speed symmetry-cost relaxed-cost clean

setup: $(VENV)/.symbench-setup

$(VENV)/.symbench-setup: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -q

# ruff with the small bug-finding rule set of pyproject.toml ([tool.ruff.lint]); installed by the test extra.
lint: setup
	$(VENV)/bin/ruff check .

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

data-rbc: setup
	# Dedalus/FFTW run ~4x faster single-threaded on 2 cores (torch keeps its threads elsewhere).
	OMP_NUM_THREADS=1 $(SYMBENCH) data generate rbc --preset $(PRESET) --root $(DATA)

bench-rbc: data-rbc
	$(SYMBENCH) bench rbc --preset $(PRESET) --root $(DATA)
	$(SYMBENCH) leaderboard --benchmark rbc

# PhiFlow smoke plumes with broken translation / rotation / scaling symmetry (ICML 2022 Table 1).
SMOKE := smoke-translation smoke-rotation smoke-scaling
data-smoke: setup
	for d in $(SMOKE); do OMP_NUM_THREADS=1 $(SYMBENCH) data generate $$d --preset $(PRESET) --root $(DATA) || exit 1; done

bench-smoke: data-smoke
	for b in $(SMOKE); do $(SYMBENCH) bench $$b --preset $(PRESET) --root $(DATA) || exit 1; done
	$(SYMBENCH) leaderboard --benchmark $(SMOKE)

# ICML 2022 Fig. 7: RMSE of the scaling RSteer against the penalty weight alpha (results/smoke-scaling/alpha_sweep_*).
ALPHAS ?= 0 1e-6 1e-5 1e-4 1e-3 1e-2
bench-alpha: setup
	OMP_NUM_THREADS=1 $(SYMBENCH) data generate smoke-scaling --preset $(PRESET) --root $(DATA)
	$(SYMBENCH) alpha-sweep smoke-scaling --model rsteer_scale --alphas $(ALPHAS) --preset $(PRESET) --root $(DATA)

# ICML 2022 sec. 5.2 / Fig. 4: model vs data equivariance error on 10 smoke sets with graded C4 symmetry breaking
# (data/smoke-levels/<preset>-<key>/level-<i>; results/levels/levels_<preset>.{md,csv,png}). Small models: one
# thread each is as fast as two here.
data-levels: setup
	OMP_NUM_THREADS=1 $(SYMBENCH) levels --data-only --preset $(PRESET) --root $(DATA)

bench-levels: data-levels
	OMP_NUM_THREADS=1 $(SYMBENCH) levels --preset $(PRESET) --root $(DATA)

# Heat diffusion (ICLR 2021 appendix C, Table 5): shallow CNN vs Equ-CNNs (Mag, Rot, Scale); RMSE and thermal-energy
# L1 on the orig / mag / rot / scale test sets (results/heat/).
data-heat: setup
	$(SYMBENCH) data generate heat --preset $(PRESET) --root $(DATA)

bench-heat: data-heat
	$(SYMBENCH) bench heat --preset $(PRESET) --root $(DATA)
	$(SYMBENCH) leaderboard --benchmark heat

# Ocean currents (ICLR 2021 Table 4, then ICML 2022 Table 4's relaxed models): the 18 ICLR models on masked 32x32 tiles of real Mediterranean surface currents
# (Copernicus DUACS sea level -> geostrophy -> CMEMS NetCDF), later days and a held-out region (results/ocean/);
# then ResNet, U-net and their Equ variants on the real OSTIA monthly sea-surface temperature (ICLR 2021 Table 8).
data-ocean: setup
	$(SYMBENCH) data generate ocean --preset $(PRESET) --root $(DATA)

bench-ocean: data-ocean
	$(SYMBENCH) bench ocean --preset $(PRESET) --root $(DATA)
	$(SYMBENCH) bench ocean-relaxed --preset $(PRESET) --root $(DATA)
	$(SYMBENCH) bench ocean-temperature --preset $(PRESET) --root $(DATA)
	$(SYMBENCH) leaderboard --benchmark ocean ocean-relaxed ocean-temperature

# Jet flow (ICML 2022 Table 2): PIV stations of a PhiFlow planar jet written as Tecplot files, read back through the
# PIV reader; the 11 models of Table 2 (results/jetflow/).
data-jetflow: setup
	OMP_NUM_THREADS=1 $(SYMBENCH) data generate jetflow --preset $(PRESET) --root $(DATA)

bench-jetflow: data-jetflow
	$(SYMBENCH) bench jetflow --preset $(PRESET) --root $(DATA)
	$(SYMBENCH) leaderboard --benchmark jetflow

# N-body dynamics in R^n (Equivariance paper sec. 4.1, Fig. 1): test MSE of a GNN and an EGNN per dimension and
# their ratio with 95 % intervals over seeds (results/nbody/nbody_<preset>.{md,csv,png}); ~12 min at cpu.
bench-nbody: setup
	OMP_NUM_THREADS=1 $(SYMBENCH) nbody --preset $(PRESET) --root $(DATA)

# Symmetry discovery (3D relaxed octahedral group conv, issue 8): data with a known subgroup symmetry of O_h; the
# learned relaxation weights stay tied exactly on that subgroup (results/symmetry_discovery/; ~2 min).
bench-discovery: setup
	OMP_NUM_THREADS=1 $(SYMBENCH) discover --subgroups C4v D4h C4 Oh

# 3D turbulence 4x super-resolution (relaxed octahedral slides' table): Trilinear, Conv, Equiv (O_h group conv) and
# R-Equiv on isotropic and sheared fluidsim flow; MAE table in results/sr3d/sr3d_<preset>.md (~15 min at cpu).
bench-sr3d: setup
	OMP_NUM_THREADS=1 $(SYMBENCH) data generate turb3d-isotropic --preset $(PRESET) --root $(DATA)
	OMP_NUM_THREADS=1 $(SYMBENCH) data generate turb3d-sheared --preset $(PRESET) --root $(DATA)
	$(SYMBENCH) sr3d --preset $(PRESET) --root $(DATA) --no-progress

# Rotated / flipped-rotated MNIST (same paper, sec. 4.2, Fig. 2): test error vs training size for CNNs equivariant to
# {e}, C4, D4, C8, D8, SO(2), O(2), power-law slopes (results/digits/digits_<preset>.{md,png}, one CSV per task).
# The two tasks train side by side, one thread each (~1 h at cpu); a stopped run resumes from its CSV.
bench-digits: setup
	OMP_NUM_THREADS=1 $(SYMBENCH) digits --tasks rotated --preset $(PRESET) --root $(DATA) --no-progress & r=$$!; \
	OMP_NUM_THREADS=1 $(SYMBENCH) digits --tasks flipped --preset $(PRESET) --root $(DATA) --no-progress & f=$$!; \
	wait $$r; a=$$?; wait $$f; b=$$?; [ $$a -eq 0 ] && [ $$b -eq 0 ]
	$(SYMBENCH) digits --report-only --preset $(PRESET)

# Optuna sweep of one model's search space (sweeps/rbc/*.yaml); best config -> benchmarks/rbc/best/<model>.yaml.
MODEL ?= unet
WORKERS ?= 1
SAMPLER ?= grid
sweep-rbc: data-rbc
	$(SYMBENCH) sweep rbc --model $(MODEL) --preset $(PRESET) --root $(DATA) --workers $(WORKERS) --sampler $(SAMPLER) $(if $(TRIALS),--trials $(TRIALS))

leaderboard: setup
	$(SYMBENCH) leaderboard

speed: setup
	$(PY) benchmarks/speed.py --models resnet unet --width 16 --size 64 --batch 8 --frames 10

# Cost of each symmetry: Equ variants vs plain models of equal parameters / equal arithmetic (results/speed/).
symmetry-cost: setup
	$(PY) benchmarks/symmetry_cost.py --size 32 --width 8 --batch 16 --frames 10 --group-order 8 --repeats 15 \
		--out results/speed
	$(PY) benchmarks/symmetry_cost.py --backbones unet --size 64 --width 64 --frames 25 --batch 16 --group-order 8 \
		--out results/speed --name symmetry_cost_unet_paper

# What relaxing a group convolution costs: RGroup vs the strict group conv and vs ConvNet (results/speed/).
relaxed-cost: setup
	$(PY) benchmarks/relaxed_cost.py --size 32 --width 16 --batch 8 --frames 10 --banks 2 --out results/speed

clean:
	rm -rf runs lightning_logs .pytest_cache
