# Two commands for a fresh Debian/Ubuntu machine: `make demo` and `make test`.
# Both set up what is missing first; set-up is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PACKAGES := libusb-1.0-0 libosmesa6 cmake g++
# Pinned: these releases come from local disk on the project's machines.
TORCH := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.setup-done

.PHONY: setup setup-metaworld test-metaworld bench-metaworld demo test apt bench press-comparison clean

setup: apt $(STAMP)

apt:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
	    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "Missing Debian packages:$$missing"; \
	    echo "Install them as root:  sudo apt-get install$$missing"; \
	    echo "(open3d/pyrealsense2 need libusb-1.0-0; MuJoCo offscreen rendering needs libosmesa6; the PX4 tests build px4_msgs with cmake and g++)"; \
	    exit 1; \
	  fi; \
	fi

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip wheel setuptools
	$(PIP) install -q $(TORCH)
	$(PIP) install -q -e ".[ros,perception,sim,fast,view,test,lerobot]" $(TORCH)
	@touch $(STAMP)

# Meta-World 3.1.1 pins mujoco 3.3.0 (the project pins 3.14.0: closed-loop results move with MuJoCo's
# version), so it gets an environment of its own, with this package but not its `sim` extra.
MW_VENV := .venv-metaworld
MW_STAMP := $(MW_VENV)/.setup-done
setup-metaworld: apt $(MW_STAMP)

$(MW_STAMP): setup.py
	@test -x $(MW_VENV)/bin/python || $(PYTHON) -m venv $(MW_VENV)
	$(MW_VENV)/bin/python -m pip install -q --upgrade pip wheel setuptools
	$(MW_VENV)/bin/python -m pip install -q $(TORCH)
	$(MW_VENV)/bin/python -m pip install -q -e ".[fast,test]" "metaworld==3.1.1" $(TORCH)
	@touch $@

# The Meta-World adapter's tests, in its environment (`make test` skips them: Meta-World is not there).
test-metaworld: setup-metaworld
	$(MW_VENV)/bin/python -m pytest -q test/test_metaworld.py

# The six-task table against the DP3 paper (docs/metaworld.md): ~15 min a task on 2 cores, cached in
# bench_out/metaworld (a rerun skips what exists). BENCH_ARGS="--tasks hammer --steps 3000" etc.
bench-metaworld: setup-metaworld
	MUJOCO_GL=osmesa $(MW_VENV)/bin/python bench/metaworld_dp3.py $(BENCH_ARGS)

demo: setup
	$(VENV)/bin/dpros demo --out demo_out

# pytest exit 5 means "no tests ran": that is a failure here, never a pass.
# The simulator tests run in a process of their own: after the rest of the suite, MuJoCo's OSMesa
# context failed to load GL in the same process ("gladLoadGL error"); each test file passes beside them.
SIM_TESTS := test/test_sim.py test/test_sim_aerial.py test/test_sim_ros.py test/test_sim_bags.py
test: setup
	@$(PY) -m pytest test -q $(addprefix --ignore=,$(SIM_TESTS)); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; \
	$(PY) -m pytest -q $(SIM_TESTS); rc2=$$?; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; exit $$rc2

bench: setup
	$(PY) bench/inference.py
	$(PY) bench/perception.py
	$(PY) bench/training.py
	$(PY) bench/solver_quality.py --train-demo
	$(PY) bench/node_latency.py
	$(PY) bench/guidance.py
	$(PY) bench/recorder.py
	$(PY) bench/realtime.py

# Both arms of the press comparison (vision only vs vision + force): collect, train each, evaluate on
# the held-out seed block 8000-8049 with a fixed sampling seed (~1 h on 2 cores).
press-comparison: setup
	MUJOCO_GL=osmesa $(PY) bench/press_force.py

clean:
	rm -rf $(VENV) $(MW_VENV) demo_out bench_out *.egg-info
