# Two commands set everything up on a fresh machine with only Python 3.11:
#   make demo   -> creates .venv on first use, installs medimg, runs the demo on the shipped CT sample
#   make test   -> same venv, runs the test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# PyTorch is installed before medimg so that pip never resolves the package's open `torch>=2.4` to PyPI's
# multi-GB CUDA build. Default: the CPU build, from a local wheel when pip finds one offline (--no-index; its
# dependencies then come from the usual index),
# else from PyTorch's CPU index. A GPU install: make TORCH_INDEX=https://download.pytorch.org/whl/cu128 ...
TORCH       ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test bench lint clean venv torch zoo-hippocampus zoo-adrenal zoo-busi zoo-hippocampus-registration zoo-fetal-head reg-brain-learned

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11 ...'"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(MAKE) --no-print-directory torch
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

torch:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-index --no-deps '$(TORCH)' 2>/dev/null \
	    || $(BIN)/python -m pip install --quiet --index-url '$(TORCH_INDEX)' '$(TORCH)'
	$(BIN)/python -m pip install --quiet '$(TORCH)'

demo: $(STAMP)
	$(BIN)/medimg demo --out demo_output

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/io.py
	$(BIN)/python benchmarks/metrics.py
	$(BIN)/python benchmarks/classical.py
	$(BIN)/python benchmarks/inference.py

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo_output .pytest_cache

# Retrain the shipped hippocampus model (55 min of training on 2 cores) and copy it into the package.
# Fold 0 of a seeded 5-fold split: the 42 validation cases stay unseen and are what benchmarks/segmentation.py scores.
zoo-hippocampus: $(STAMP)
	$(BIN)/medimg train segment $(or $(MEDIMG_DATA),../shared/data)/hippocampus -o runs/hippocampus --fold 0 \
	    --minutes 55 --iterations 100000 --set batch_size=4 --validate-every 5 --validate-cases 12 --cache runs/cache
	$(BIN)/python benchmarks/segmentation.py --model runs/hippocampus --fold 0 --write-postprocess
	mkdir -p src/medimg/zoo/hippocampus/fold_0
	cp runs/hippocampus/plan.json runs/hippocampus/fingerprint.json runs/hippocampus/splits.json \
	    runs/hippocampus/postprocess.json src/medimg/zoo/hippocampus/
	cp runs/hippocampus/fold_0/model.pt runs/hippocampus/fold_0/metrics.json runs/hippocampus/fold_0/training_curve.png \
	    src/medimg/zoo/hippocampus/fold_0/

# Retrain the shipped fetal-head model (HC18, CC BY 4.0; 32 min on 2 cores) and copy it into the package. Fold 0 of a
# 5-fold split grouped by fetus: its 77 validation images (62 fetuses) stay unseen and are what the benchmark scores,
# through the `fetal_head` pipeline that `medimg analyze` runs (so the copy comes before the benchmark).
zoo-fetal-head: $(STAMP)
	$(BIN)/medimg train segment $(or $(MEDIMG_DATA),../shared/data)/fetal_head_hc18 -o runs/fetal_head --fold 0 \
	    --minutes 32 --iterations 100000 --group-by '^(\d+)_' --cache runs/cache --seed 0 \
	    --set 'target_spacing=[0.5,0.5,1.0]' --set 'patch_size=[256,320]'
	rm -rf src/medimg/zoo/fetal_head/fold_*
	mkdir -p src/medimg/zoo/fetal_head/fold_0
	cp runs/fetal_head/plan.json runs/fetal_head/fingerprint.json runs/fetal_head/splits.json src/medimg/zoo/fetal_head/
	cp runs/fetal_head/fold_0/model.pt runs/fetal_head/fold_0/metrics.json runs/fetal_head/fold_0/training_curve.png \
	    src/medimg/zoo/fetal_head/fold_0/
	$(BIN)/python benchmarks/fetal_head_dl.py --model src/medimg/zoo/fetal_head --fold 0

# Retrain the shipped AdrenalMNIST3D classifier: 3 folds of 15 min on 2 cores, resized to 28^3, copied into the package.
# Folds 0-2 of the official train split; the official val split stays unseen and is what benchmarks/classification.py scores.
ADRENAL_NPZ = $(or $(MEDIMG_DATA),../shared/data)/adrenalmnist3d/adrenalmnist3d_64_trainval.npz
zoo-adrenal: $(STAMP)
	for k in 0 1 2; do $(BIN)/medimg train classify $(ADRENAL_NPZ) --split train -o runs/cls/adrenal28 --fold $$k \
	    --minutes 15 --seed 0 --set 'input_size=[28,28,28]' || exit 1; done
	$(BIN)/python benchmarks/classification.py adrenal --models runs/cls/adrenal28
	rm -rf src/medimg/zoo/adrenalmnist3d/fold_*
	cp runs/cls/adrenal28/plan.json runs/cls/adrenal28/splits.json src/medimg/zoo/adrenalmnist3d/
	for k in 0 1 2; do mkdir -p src/medimg/zoo/adrenalmnist3d/fold_$$k && cd runs/cls/adrenal28/fold_$$k && \
	    cp model.pt metrics.json calibration.json reliability.png training_curve.png \
	    ../../../../src/medimg/zoo/adrenalmnist3d/fold_$$k/ && cd ../../../.. || exit 1; done

# The learned hippocampus registration model: fold 0 of the segmentation model's split, so that the registration
# benchmark's pairs (drawn from that fold's validation cases) stay unseen; then the benchmark's learned rows.
zoo-hippocampus-registration: $(STAMP)
	$(BIN)/medimg train register $(or $(MEDIMG_DATA),../shared/data)/hippocampus -o runs/reg/hippocampus \
	    --fold 0 --minutes 40 --seed 0 --splits src/medimg/zoo/hippocampus/splits.json
	rm -rf src/medimg/zoo/hippocampus_registration/fold_*
	mkdir -p src/medimg/zoo/hippocampus_registration/fold_0
	cp runs/reg/hippocampus/plan.json runs/reg/hippocampus/splits.json src/medimg/zoo/hippocampus_registration/
	cd runs/reg/hippocampus/fold_0 && cp model.pt metrics.json training_curve.png \
	    ../../../../src/medimg/zoo/hippocampus_registration/fold_0/
	$(BIN)/python benchmarks/registration.py hippocampus

# The supervised brain registration model of the brain benchmark: simulated smooth fields on another patient's
# scans (brain_mri_dicom T1 pre/post, T2, FLAIR at 2 mm), never the evaluation brain; then the brain benchmark.
reg-brain-learned: $(STAMP)
	$(BIN)/python benchmarks/registration.py brain-train-data --out runs/reg/brain_mri_nifti
	$(BIN)/medimg train register runs/reg/brain_mri_nifti -o runs/reg/brain_supervised --fold all --minutes 15 \
	    --seed 0 --set mode=supervised --set 'spacing=[2,2,2]' --set 'grid=[64,64,64]' --set batch_size=2
	$(BIN)/python benchmarks/registration.py brain --model runs/reg/brain_supervised

# Train the BUSI classifier locally (its weights are not shipped: the licence of the data copy is unconfirmed).
# The folder src/medimg/zoo/busi/ is git-ignored; `medimg models` lists it as ready once this has run.
zoo-busi: $(STAMP)
	$(BIN)/medimg train classify $(or $(MEDIMG_DATA),../shared/data)/breast_ultrasound_busi -o runs/cls/busi_zoo \
	    --fold 0 --minutes 15 --seed 0
	mkdir -p src/medimg/zoo/busi/fold_0
	cp runs/cls/busi_zoo/plan.json runs/cls/busi_zoo/splits.json src/medimg/zoo/busi/
	cd runs/cls/busi_zoo/fold_0 && cp model.pt metrics.json calibration.json reliability.png training_curve.png \
	    ../../../../src/medimg/zoo/busi/fold_0/
