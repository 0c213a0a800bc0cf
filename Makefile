# Thin targets; the work lives in tools/. Everything installs into the current Python
# environment ($(PYTHON)); create and activate a venv first if you want isolation.
PYTHON ?= python3
PIP    ?= $(PYTHON) -m pip
NB     ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

STAMP := .install-stamp
WIDGETS_JS := _static_widgets/.stamp

.PHONY: install book test lint libtest check nbval html-check execute clean

# Install what is missing: Debian data packages, pinned Python packages, the widget JS.
$(STAMP): requirements.txt requirements-nodeps.txt apt-packages.txt pyproject.toml
	$(PYTHON) tools/install_apt.py apt-packages.txt
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

$(WIDGETS_JS): tools/pack_widgets_js.py
	$(PYTHON) tools/pack_widgets_js.py _static_widgets

install: $(STAMP) $(WIDGETS_JS)

book: install
	$(PYTHON) tools/scorecard.py
	$(PYTHON) -c "import sys; from jupyter_book.cli.main import main; sys.exit(main())" \
	  build . -W -n --keep-going

lint: install
	$(PYTHON) -m ruff check lib tests tools chapters

libtest: install
	$(PYTHON) -m pytest -q tests

check: install
	$(PYTHON) tools/check_notebooks.py
	$(PYTHON) tools/scorecard.py --check

nbval: install
	ICLR22_PROFILE=quick $(PYTHON) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
	  --nbval-sanitize-with tools/nbval_sanitize.cfg -o addopts="" chapters

html-check: install
	$(PYTHON) tools/check_html.py _build/html

test: lint libtest check nbval book html-check

execute: install
	$(PYTHON) tools/execute.py $(NB)

clean:
	rm -rf _build
