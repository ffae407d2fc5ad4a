# Everything the project needs is installed from here; `make setup` is idempotent.
VENV     := .venv
PY       := $(VENV)/bin/python
APT_PKGS := python3-lxc lxc lxc-templates dnsmasq-base python3-yaml python3-dev python3-venv \
            protobuf-compiler python3-protobuf busybox-static iproute2 nftables zstd runc podman gcc make
PROTOS   := $(wildcard engine/proto/*.proto engine/kinds/*.proto lxc_cr/*.proto)
PB2      := $(PROTOS:.proto=_pb2.py)
CANNED   := lxc_cr/rpc_canned.py

.PHONY: setup demo test bench clean apt venv native blobs progs bytecode

setup: apt venv native $(PB2) $(CANNED) blobs progs bytecode

apt:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || /usr/bin/python3 -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "cffi>=1.15" "pyroute2>=0.7" pytest "setuptools>=64"
	# compat mode: a plain path in a .pth file, no import hook to load at every start
	$(PY) -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps \
	    --config-settings editable_mode=compat -e .
	touch $@

native: engine/.native-built

engine/.native-built: engine/native_build.py engine/asm/restorer.h $(VENV)/.installed
	cd engine && ../$(PY) native_build.py
	touch $@

%_pb2.py: %.proto
	protoc -I$(dir $<) --python_out=$(dir $<) $<

# what the swrk server works out once, here (lxc_cr/rpc.py canned)
$(CANNED): lxc_cr/rpc_pb2.py lxc_cr/rpc.py lxc_cr/__init__.py lxc_cr/cli.py lxc_cr/criu_opts.py $(VENV)/.installed
	$(PY) -m lxc_cr.rpc > $@.tmp && mv $@.tmp $@

blobs:
	$(MAKE) -s -C engine/asm

progs:
	$(MAKE) -s -C tests/integration/progs

# Start-up time: compile once here, because PYTHONDONTWRITEBYTECODE (set on some hosts) would
# make every run compile its modules from source (~50 ms). compileall skips what is up to date.
bytecode: $(PB2) $(CANNED)
	$(PY) -m compileall -q lxc_cr engine

demo: setup
	$(PY) -m lxc_cr.demo

test: setup
	$(MAKE) -s -C engine/asm test
	$(PY) -m pytest -q tests

bench: setup
	$(PY) bench/run.py
	$(PY) bench/containers.py --runs 15
	$(PY) bench/runc.py --runs 15

clean:
	rm -rf $(VENV) engine/.native-built engine/_native* $(PB2) $(CANNED) build *.egg-info
	find lxc_cr engine bench tests -name __pycache__ -prune -exec rm -rf {} +
	$(MAKE) -s -C engine/asm clean
	$(MAKE) -s -C tests/integration/progs clean
