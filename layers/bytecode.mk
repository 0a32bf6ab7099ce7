# Compiled bytecode for a layer, included by the layers' build recipes
# (layers/dependencies/Makefile, shared/Makefile).
#
# Lambda mounts a layer read-only at /opt: a layer without bytecode is compiled
# again, in memory, by every cold start (seconds of it for SQLAlchemy, pydantic and
# Powertools). So each layer ships the bytecode of the runtime's Python, CPython
# 3.12, compiled by a python3.12 at build time (the build host's Python is another
# version: its bytecode would be ignored). Hash-based and unchecked (PEP 552): the
# runtime trusts it whatever mtimes the files get through the zip, so nothing is
# ever recompiled, and the same sources give the same bytes, hence the same layer.
# Source paths are recorded as /opt/python/..., where Lambda finds them.
#
# RUNTIME_PYTHON: a CPython 3.12 (default: python3.12 on PATH, else pyenv's).

RUNTIME_PYTHON ?= $(firstword $(foreach candidate,python3.12 \
	$(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/3.12*/bin/python3.12), \
	$(shell $(candidate) -c 'import sys; sys.version_info[:2] == (3, 12) and print("$(candidate)")' 2>/dev/null)))

# $(call compile-bytecode,<dir>): compile every module under <dir> (the layer's python/)
define compile-bytecode
	@test -n "$(RUNTIME_PYTHON)" || { echo "error: no python3.12 to compile the layer's bytecode for the python3.12 runtime (set RUNTIME_PYTHON)" >&2; exit 1; }
	"$(RUNTIME_PYTHON)" -m compileall -q -j 0 --invalidation-mode unchecked-hash \
		-s "$(1)" -p /opt/python "$(1)"
endef
