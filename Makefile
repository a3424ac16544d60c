# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit js bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

# The main job on the embedded defaults (a SQLite file, an .eml outbox), with the clock
# set by --now so every run of the demo shows the same days.
DEMO      := demo-state
CADENCE   := $(BIN)/cadence
EXAMPLE   := cadences/heads-of-platform.yaml
CONTACTS  := cadences/contacts.csv
demo: export CADENCE_DB = $(DEMO)/cadence.db
demo: export CADENCE_TRANSPORT = outbox:$(DEMO)/outbox
demo: export NO_COLOR = 1
demo: $(STAMP)
	@rm -rf $(DEMO) && mkdir -p $(DEMO)
	@echo "== 1. validate every example cadence"
	$(CADENCE) validate cadences/
	@echo; echo "== 2. the plan for a launch on Monday 2 March 2026, first email 09:00 in each contact's zone"
	$(CADENCE) plan $(EXAMPLE) --contacts $(CONTACTS) --start 2026-03-02T00:00Z --send-at 09:00 | head -n 16
	@echo; echo "== 3. launch (a second launch of the same contacts enrols nobody twice)"
	$(CADENCE) launch $(EXAMPLE) --contacts $(CONTACTS) --start 2026-03-02T00:00Z --send-at 09:00 --now 2026-03-02T00:00Z
	$(CADENCE) launch $(EXAMPLE) --contacts $(CONTACTS) --start 2026-03-02T00:00Z --send-at 09:00 --now 2026-03-02T00:00Z | tail -n 2
	@echo; echo "== 4. Monday: the runner, as cron would start it every few hours (UTC); intros go out at 09:00 local"
	@for h in 00 04 08 09 14 15 17; do $(CADENCE) run --once --now 2026-03-02T$$h:05Z; done
	@ls $(DEMO)/outbox | head -n 3; echo "   ($$(ls $(DEMO)/outbox | wc -l) messages in $(DEMO)/outbox)"
	@sed -n '1,/^$$/p' "$(DEMO)/outbox/$$(ls $(DEMO)/outbox | head -n 1)"
	@echo; echo "== 5. Tuesday: the call tasks open and hold each contact's later steps (R5)"
	@for h in 00 04 08 09 13 14 16; do $(CADENCE) run --once --now 2026-03-03T$$h:05Z; done
	$(CADENCE) tasks list | head -n 6
	@echo; echo "== 6. Wednesday: a rep works two calls (one done, one skipped); one contact replies"
	$(CADENCE) tasks show "$$($(CADENCE) tasks list -f json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"
	$(CADENCE) tasks done "$$($(CADENCE) tasks list -f json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')" --now 2026-03-04T12:00Z
	$(CADENCE) tasks skip "$$($(CADENCE) tasks list -f json | $(BIN)/python -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')" --now 2026-03-04T12:00Z
	$(CADENCE) event reply --contact ben.smith@globex.example --now 2026-03-04T12:00Z
	@echo; echo "== 7. Wednesday to Friday: the worked contacts move on, the one who replied is done"
	@for d in 04 05 06; do for h in 00 04 08 09 14 15 17 19 22; do $(CADENCE) run --once --now 2026-03-$$d'T'$$h:05Z; done; done | grep -v "nothing due"
	@echo; echo "== 8. status"
	$(CADENCE) status --now 2026-03-06T23:59Z
	@echo; echo "== 9. the Command Center: the reps' web page for these tasks (README: The Command Center)"
	$(CADENCE) users add dana@acme.example --name "Dana Reyes" --timezone Europe/Amsterdam
	@echo "   start it:  CADENCE_DB=$(DEMO)/cadence.db CADENCE_TRANSPORT=outbox:$(DEMO)/outbox $(CADENCE) serve --now 2026-03-06T12:00Z"
	@echo "   sign in (one-time link, valid 15 minutes; \`CADENCE_DB=$(DEMO)/cadence.db $(CADENCE) users link dana@acme.example\` makes another):"
	@echo "   $$($(CADENCE) users link dana@acme.example)"

lint: $(STAMP)
	$(BIN)/ruff check engine schemas cli.py tests $(wildcard bench/*)
	$(BIN)/ruff format --check engine schemas cli.py tests $(wildcard bench/*)

typecheck: $(STAMP)
	@# mypy reads the package through a link named for it (the editable install's
	@# import hook is invisible to mypy).
	@mkdir -p .typecheck && ln -sfn .. .typecheck/cadence_engine
	MYPYPATH=.typecheck $(BIN)/mypy --strict -p cadence_engine.engine -m cadence_engine.cli

# The real clients the tests drive (Mermaid's parser, yaml-language-server), pinned in
# tests/js/package-lock.json. Without npm the tests that need them skip with a message.
JS_STAMP := tests/js/node_modules/.installed
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null; then \
		cd tests/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the Mermaid and yaml-language-server tests will be skipped"; fi

js: $(JS_STAMP)

unit: $(STAMP) $(JS_STAMP)
	$(BIN)/python -m pytest -W error -n 2 -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python bench/validate
	$(BIN)/python bench/plan
	$(BIN)/python bench/run
	$(BIN)/python bench/serve
	$(BIN)/python bench/inbox

clean:
	rm -rf $(VENV) tests/js/node_modules build *.egg-info .pytest_cache .mypy_cache .ruff_cache outbox cadence.db* demo-state
