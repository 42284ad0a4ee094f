# Lifeline: `make demo` shows recovery from crashes, `make test` runs the test suite.

SWIFT ?= swift
APT_PACKAGES = libzstd-dev libxxhash-dev zlib1g-dev pkg-config

.PHONY: all prereqs bench-prereqs testbed-prereqs build test demo clean

all: build

# Installs the C libraries Lifeline links against, when they are missing.
prereqs:
	@if pkg-config --exists libzstd libxxhash zlib 2>/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing $(APT_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	else \
		echo "lifeline needs $(APT_PACKAGES): sudo apt-get install $(APT_PACKAGES)" >&2; exit 1; \
	fi

# Open MPI, which the benchmarks measure beside Lifeline where it is installed (optional). Its
# headers are asked for, not only mpicc: openmpi-bin (which the test bed installs) brings the
# compiler wrapper without them.
bench-prereqs: prereqs
	@if command -v mpirun >/dev/null && echo '#include <mpi.h>' | mpicc -E -x c - >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing openmpi-bin libopenmpi-dev"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null; \
	else \
		echo "the Open MPI comparisons need: sudo apt-get install openmpi-bin libopenmpi-dev" >&2; \
	fi

# What the tests of jobs on several hosts use where they can (root): network namespaces
# (iproute2), nsenter (util-linux), a Slurm cluster (slurm-wlm, munge) and Open MPI's mpirun
# (openmpi-bin). Without them those tests skip with a line.
testbed-prereqs:
	@if command -v ip >/dev/null && command -v nsenter >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v mpirun >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing iproute2 util-linux slurm-wlm munge openmpi-bin"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 util-linux slurm-wlm munge openmpi-bin >/dev/null; \
	else \
		echo "the multi-host tests need root and: sudo apt-get install iproute2 util-linux slurm-wlm munge openmpi-bin (they skip without)" >&2; \
	fi

build: prereqs
	$(SWIFT) build -c release

test: prereqs
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

demo: build
	scripts/demo.sh

clean:
	rm -rf .build lifeline-runs
