# lms_etl — the two commands: `make demo` (the whole job on the bundled demo API) and
# `make test` (every test). Both set the machine up first and are safe to run again.

SHELL := /bin/bash
PG_MAJOR ?= 15
PG_CONFIG ?= /usr/lib/postgresql/$(PG_MAJOR)/bin/pg_config
export PATH := $(HOME)/.cargo/bin:$(PATH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PSQL := $(SUDO) runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1
PGRX_TEST_DATA := /var/lib/postgresql/pgrx-test

.PHONY: demo test setup install-ext database test-ext test-rust citus test-citus test-package test-upgrade check-released lint bench fuzz clean-db package

demo: install-ext database
	cargo build --release -p lms-etl-loader --bin lms-etl
	bash scripts/demo.sh

# test-upgrade installs an old release into the shared extension directory, so it runs
# last and alone, after every test that uses the installed extension (even under make -j).
test: setup test-ext install-ext lint test-rust
	$(MAKE) test-citus
	$(MAKE) test-package
	$(MAKE) test-upgrade

setup:
	bash scripts/setup.sh

# The release build of the extension into the system PostgreSQL (after test-ext, which
# installs its own test build over the same files).
# The old library is moved aside first: copying over it in place would change the code under
# every backend that has it mapped (they crash); moved, they keep the old file until they end.
# A failed build puts it back.
install-ext: setup
	@so="$$($(PG_CONFIG) --pkglibdir)/lms_etl-$$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1).so"; \
	  if [ -f "$$so" ]; then $(SUDO) mv -f "$$so" "$$so.old"; fi; \
	  if (cd pg_ext && cargo pgrx install --release --pg-config $(PG_CONFIG) $(if $(SUDO),--sudo,)); then \
	    $(SUDO) rm -f "$$so.old"; \
	  else \
	    [ -f "$$so.old" ] && $(SUDO) mv -f "$$so.old" "$$so"; exit 1; \
	  fi

database: install-ext
	@$(PSQL) -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'lms_etl'" | grep -q 1 \
	  || $(PSQL) -d postgres -c "CREATE DATABASE lms_etl"
	$(PSQL) -d lms_etl -c "CREATE EXTENSION IF NOT EXISTS lms_etl" -c "ALTER EXTENSION lms_etl UPDATE"
	@$(PSQL) -d lms_etl -tAc "SELECT has_schema_privilege('lms_etl_loader', 'lms_etl', 'USAGE')" | grep -q t \
	  || { echo "database lms_etl holds an lms_etl extension made by a pre-release build (no role grants): drop it (DROP DATABASE lms_etl) and run make database again" >&2; exit 1; }
	@# The loader logs in as `lms_etl`, a role with only lms_etl_loader's privileges (no superuser).
	@$(PSQL) -d postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = 'lms_etl'" | grep -q 1 \
	  || $(PSQL) -d postgres -c "CREATE ROLE lms_etl LOGIN IN ROLE lms_etl_loader"
	@$(PSQL) -d lms_etl -tAc "SELECT 'extension lms_etl ' || extversion || ' installed; parse_passback_params answers: ' || (lms_etl.parse_passback_params('{''oauth_consumer_key'': '''', ''lis_result_sourcedid'': ''ok''}')).lis_result_sourcedid FROM pg_extension WHERE extname = 'lms_etl'"

# #[pg_test]s in a private cluster; initdb refuses root, so the cluster runs as postgres.
test-ext: setup
	$(SUDO) install -d -o postgres -g postgres $(PGRX_TEST_DATA)
	cd pg_ext && cargo pgrx test pg$(PG_MAJOR) --runas postgres --pgdata $(PGRX_TEST_DATA)

lint: check-released
	python3 scripts/upgrade_copies.py
	cargo fmt --all -- --check
	cargo clippy --workspace --exclude lms_etl --all-targets --features lms-etl-tests/citus -- -D warnings
	cd pg_ext && cargo clippy --all-targets --features "pg$(PG_MAJOR) pg_test" -- -D warnings

# Parser unit/property tests, loader unit tests, end-to-end tests (real PostgreSQL,
# demo API, SMTP and Sheets stand-ins).
test-rust:
	cargo test --workspace --exclude lms_etl

# Citus 13.2.2 built from the vendored source (../shared/vendor: the release tarball with a
# one-line compat patch for this PostgreSQL 15 minor) into this PostgreSQL, unless installed.
# Users install their platform's Citus packages instead (README).
citus: setup
	bash scripts/citus.sh install

# lms_etl on a throwaway Citus cluster (coordinator + 2 workers on 127.0.0.1, started and
# removed by the tests): tests/tests/citus.rs and the `citus::` tests of adversary11.rs, behind
# the `citus` feature so `test-rust` does not run them without Citus. Uses the installed
# extension, so it runs before test-upgrade.
test-citus: citus
	cargo test -p lms-etl-tests --features citus --test citus
	cargo test -p lms-etl-tests --features citus --test adversary11 -- citus::

# The tarball of `make package`, unpacked and installed into staging roots (DESTDIR) as a
# server would: files where pg_config says, checksums, a refused wrong major, idempotence,
# CREATE EXTENSION in a PostgreSQL relocated into one. Leaves the system's PostgreSQL alone.
test-package: setup
	PG_CONFIG=$(PG_CONFIG) bash tests/package/package_test.sh

# Released SQL is frozen: every file recorded in sql/released/RELEASES keeps its sha256.
check-released:
	bash scripts/released.sh check

# The last release, holding data, updated to HEAD with ALTER EXTENSION lms_etl UPDATE: data
# intact, HEAD's loader works on it, catalog equal to a fresh install. Ends with HEAD installed.
test-upgrade: setup
	bash tests/upgrade/upgrade_test.sh

# dist/lms_etl-<version>-pg<major>-<arch>-linux.tar.gz for a server without Rust: the
# extension's files, the lms-etl binary and install.sh. Builds only; installs nothing.
package: setup
	PG_CONFIG=$(PG_CONFIG) bash scripts/package.sh

bench: install-ext database
	bash bench/run.sh

fuzz:
	bash scripts/fuzz.sh 60
