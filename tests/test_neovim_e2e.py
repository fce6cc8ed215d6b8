"""End to end with a real editor: headless Neovim (0.7.2 from Debian) runs editors/neovim against a real
`repolm serve`, on a fixture repository with a real index and the real model.

It is also issue 3's acceptance test: a completion that uses a function defined only in another file,
and a hover whose citation points at that file and line.

Neovim drives itself: a Lua script (written below) opens `app/checkout.py`, types `A` to enter insert
mode at the end of `    total = apply_`, waits for the plugin's ghost text, accepts it with the accept key,
runs `:RepolmExplain` on a call of `apply_discount`, asks for a hover with `vim.lsp.buf_request_sync`,
runs `:RepolmSearch` and `:RepolmStatus`, and writes what it saw to a JSON file. Waiting is done with
timers (`vim.defer_fn`), so the editor's main loop runs the plugin's autocommands as in real use.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_tree
from shop_fixture import DEF_LINE, TYPED
from shop_fixture import FILES as SHOP_FILES

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
PLUGIN = REPO / "editors" / "neovim"
TIMEOUT_S = 300  # the first model load converts a GGUF; completions run on a shared CPU

CURSOR_LINE = 13  # 1-based line of TYPED, the last line of CHECKOUT
USE_LINE, USE_COL = 7, len("    discounted = apply_d")  # 1-based line, 0-based byte column

FILES = {"repolm.toml": "", **SHOP_FILES}  # repolm.toml: the root marker the plugin finds

INIT_LUA = """
vim.opt.runtimepath:prepend({plugin})
vim.cmd("filetype plugin on")
vim.o.swapfile = false
require("repolm").setup({{
  cmd = {cmd},
  debounce_ms = 50,
  -- Small budgets keep the test quick on a 2-core CPU; the code paths are the production ones.
  init_options = {{ repolm = {{
    completion = {{ budget = 512, maxTokens = 16 }},
    explain = {{ maxTokens = 24 }},
  }} }},
}})
"""

DRIVER_LUA = r"""
local repolm = require("repolm")
local api, uv = vim.api, vim.loop
local OUT, ROOT, TIMEOUT_MS = {out}, {root}, {timeout_ms}
local result = {{ errors = {{}}, nvim = tostring(vim.version().major) .. "." .. tostring(vim.version().minor)
  .. "." .. tostring(vim.version().patch) }}
local deadline = uv.now() + TIMEOUT_MS

local function finish()
  local log = vim.lsp.log
  result.lsp_log = (log and log.get_filename) and log.get_filename() or vim.lsp.get_log_path()
  local file = io.open(OUT, "w")
  file:write(vim.fn.json_encode(result))
  file:close()
  vim.cmd("qall!")
end

local function fail(message)
  table.insert(result.errors, message)
  finish()
end

-- Calls check() every 100 ms on the main loop until it returns a value, then on_done(value).
local function poll(what, check, on_done)
  local function tick()
    local ok, value = pcall(check)
    if not ok then
      return fail(what .. ": " .. tostring(value))
    end
    if value then
      local done_ok, err = pcall(on_done, value)
      if not done_ok then
        fail(what .. " (after): " .. tostring(err))
      end
      return
    end
    if uv.now() > deadline then
      return fail("timed out waiting for " .. what)
    end
    vim.defer_fn(tick, 100)
  end
  vim.defer_fn(tick, 0)
end

local function keys(text)
  api.nvim_feedkeys(api.nvim_replace_termcodes(text, true, false, true), "m", false)
end

local function floating_text()
  for _, win in ipairs(api.nvim_list_wins()) do
    if api.nvim_win_get_config(win).relative ~= "" then
      local lines = api.nvim_buf_get_lines(api.nvim_win_get_buf(win), 0, -1, false)
      return table.concat(lines, "\n")
    end
  end
end

local buf

local function step_status()
  vim.cmd("RepolmStatus")
  poll("RepolmStatus", function() return repolm.last_status end, function(text)
    result.status_text = text
    result.statusline = repolm.statusline(buf)
    finish()
  end)
end

local function step_search()
  vim.cmd("RepolmSearch apply discount to a price")
  poll("RepolmSearch", function()
    local items = vim.fn.getqflist()
    return #items > 0 and items or nil
  end, function(items)
    result.quickfix = {{}}
    for _, item in ipairs(items) do
      local file = api.nvim_buf_get_name(item.bufnr)
      table.insert(result.quickfix, {{ file = file, lnum = item.lnum, text = item.text }})
    end
    vim.cmd("cclose")
    api.nvim_set_current_win(vim.fn.bufwinid(buf))
    step_status()
  end)
end

local function step_hover()
  local client = repolm.get_client(buf)
  local params = {{
    textDocument = {{ uri = vim.uri_from_bufnr(buf) }},
    position = {{ line = {use_line} - 1, character = {use_col} }},
  }}
  local answers = vim.lsp.buf_request_sync(buf, "textDocument/hover", params, TIMEOUT_MS)
  local answer = answers and answers[client.id]
  if not answer or answer.err or not answer.result then
    return fail("hover: " .. vim.inspect(answer))
  end
  local contents = answer.result.contents
  result.hover = type(contents) == "table" and (contents.value or vim.inspect(contents)) or tostring(contents)
  step_search()
end

local function step_explain()
  api.nvim_win_set_cursor(0, {{ {use_line}, {use_col} }})
  vim.cmd("RepolmExplain")
  -- The float shows the text as it is written, then the checked answer.
  local function answered() return repolm.last_explanation and floating_text() end
  poll("the :RepolmExplain answer", answered, function(text)
    result.explain_float = text
    result.explain_text = repolm.last_explanation
    result.streamed = #repolm.streamed
    vim.cmd("silent! only")  -- close the float
    step_hover()
  end)
end

local function step_accept(ghost)
  keys({accept_key})
  poll("the accepted completion", function()
    local line = api.nvim_buf_get_lines(buf, {cursor_line} - 1, {cursor_line}, false)[1]
    return line ~= {typed} and line or nil
  end, function(line)
    result.accepted_line = line
    result.mode_after_accept = vim.fn.mode()
    result.extmarks_after_accept = #api.nvim_buf_get_extmarks(buf, repolm.ns, 0, -1, {{}})
    keys("<Esc>")
    poll("normal mode", function() return vim.fn.mode() == "n" end, step_explain)
  end)
end

local function step_complete()
  api.nvim_win_set_cursor(0, {{ {cursor_line}, 0 }})
  keys("A")  -- insert mode at the end of the line: InsertEnter, then the debounced request
  poll("ghost text", function()
    local marks = api.nvim_buf_get_extmarks(buf, repolm.ns, 0, -1, {{ details = true }})
    return #marks > 0 and marks or nil
  end, function(marks)
    local row, col, details = marks[1][2], marks[1][3], marks[1][4]
    local chunks = {{}}
    for _, chunk in ipairs(details.virt_text or {{}}) do
      table.insert(chunks, chunk[1])
    end
    result.ghost = {{
      row = row, col = col, virt_text = table.concat(chunks), virt_text_pos = details.virt_text_pos,
      virt_lines = details.virt_lines and #details.virt_lines or 0, mode = vim.fn.mode(),
      text = repolm.ghost(buf) and repolm.ghost(buf).text,
    }}
    step_accept()
  end)
end

local function step_reindex()
  local answers = vim.lsp.buf_request_sync(buf, "workspace/executeCommand",
    {{ command = "repolm.reindex", arguments = {{}} }}, TIMEOUT_MS)
  local client = repolm.get_client(buf)
  local answer = answers and answers[client.id]
  if not answer or answer.err then
    return fail("reindex: " .. vim.inspect(answer))
  end
  result.generation = answer.result.generation
  poll("the end of reindex progress", function()
    local status = repolm.status(buf)
    return status.state == "ready" and status.message and status
  end, function(status)
    result.status_after_reindex = status
    step_complete()
  end)
end

vim.defer_fn(function()
  vim.cmd("edit " .. vim.fn.fnameescape(ROOT .. "/app/checkout.py"))
  buf = api.nvim_get_current_buf()
  result.filetype = vim.bo[buf].filetype
  poll("the repolm client", function()
    local client = repolm.get_client(buf)
    return client and client.initialized and repolm.status(buf).state ~= "starting" and client
  end, function(client)
    result.root = client.config.root_dir
    result.server_capabilities = {{
      inline = client.server_capabilities.inlineCompletionProvider ~= nil,
      hover = client.server_capabilities.hoverProvider ~= nil,
    }}
    step_reindex()
  end)
end, 0)
"""


RENDER_LUA = r"""
local repolm = require("repolm")
local api = vim.api
local result = {{ nvim010 = vim.fn.has("nvim-0.10") == 1 }}
local function marks(buf)
  local found = {{}}
  for _, mark in ipairs(api.nvim_buf_get_extmarks(buf, repolm.ns, 0, -1, {{ details = true }})) do
    local details = mark[4]
    table.insert(found, {{
      row = mark[2], col = mark[3], pos = details.virt_text_pos,
      text = details.virt_text and details.virt_text[1][1],
      below = details.virt_lines and #details.virt_lines or 0,
    }})
  end
  return found
end
local function finish(err)
  result.error = err
  local file = io.open({out}, "w")
  file:write(vim.fn.json_encode(result))
  file:close()
  vim.cmd("qall!")
end
local buf = api.nvim_create_buf(true, false)
api.nvim_set_current_buf(buf)

local function normal_mode_cases()
  -- In the middle of a line: the text after the cursor stays visible.
  api.nvim_buf_set_lines(buf, 0, -1, false, {{ "print()" }})
  api.nvim_win_set_cursor(0, {{ 1, 6 }})
  repolm._show(buf, 0, 6, "'hi'")
  result.inline_marks = marks(buf)
  result.inline_accepted = repolm.accept(buf)
  result.inline_lines = api.nvim_buf_get_lines(buf, 0, -1, false)
  -- Stale ghost text (the buffer changed since) is dropped, not inserted.
  repolm._show(buf, 0, 0, "x")
  api.nvim_buf_set_lines(buf, 0, -1, false, {{ "changed" }})
  result.stale_accepted = repolm.accept(buf)
  result.stale_lines = api.nvim_buf_get_lines(buf, 0, -1, false)
  result.stale_marks = #marks(buf)
end

local function insert_mode_case()
  -- A multi-line completion at the end of a line: first line at the cursor, the rest below.
  result.mode = vim.fn.mode()
  repolm._show(buf, 1, 4, "y = x * 2\nreturn y")
  result.block_marks = marks(buf)
  result.block_accepted = repolm.accept(buf)
  result.block_lines = api.nvim_buf_get_lines(buf, 0, -1, false)
  result.block_cursor = api.nvim_win_get_cursor(0)
  result.block_marks_after = #marks(buf)
  api.nvim_feedkeys(api.nvim_replace_termcodes("<Esc>", true, false, true), "n", false)
end

api.nvim_buf_set_lines(buf, 0, -1, false, {{ "def f(x):", "    " }})
api.nvim_win_set_cursor(0, {{ 2, 0 }})
api.nvim_feedkeys("A", "n", false) -- insert mode at the end of the line, through the main loop
local tries = 0
local function wait_insert()
  tries = tries + 1
  if vim.fn.mode() == "i" then
    local ok, err = pcall(insert_mode_case)
    if not ok then
      return finish(tostring(err))
    end
    return vim.defer_fn(function()
      local ok2, err2 = pcall(normal_mode_cases)
      finish(not ok2 and tostring(err2) or nil)
    end, 50)
  end
  if tries > 100 then
    return finish("never entered insert mode")
  end
  vim.defer_fn(wait_insert, 20)
end
vim.defer_fn(wait_insert, 20)
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid Lua string literal for these values


def run_lua(script: Path) -> str:
    """A -c command that runs a Lua file and exits with an error (instead of waiting) if it fails."""
    return (
        f"lua local ok, err = pcall(dofile, {lua_string(str(script))}) "
        "if not ok then io.stderr:write(tostring(err) .. '\\n') vim.cmd('cquit 3') end"
    )


def lua_list(values: list[str]) -> str:
    return "{" + ", ".join(lua_string(v) for v in values) + "}"


def nvim_version(nvim: str) -> tuple[int, ...]:
    output = subprocess.run([nvim, "--version"], capture_output=True, text=True, check=True).stdout
    first = output.split("\n")[0]
    match = re.search(r"v(\d+)\.(\d+)\.(\d+)", first)
    assert match, first
    return tuple(int(part) for part in match.groups())


@pytest.fixture(scope="module")
def nvim() -> str:
    found = os.environ.get("REPOLM_TEST_NVIM") or shutil.which("nvim")  # another Neovim: REPOLM_TEST_NVIM
    if found is None:
        pytest.fail("Neovim is not installed: run scripts/setup.sh (apt-get install neovim)")
    assert nvim_version(found) >= (0, 7, 0)
    return found


def test_neovim_ghost_text_explain_and_hover(nvim: str, tmp_path: Path) -> None:
    root = write_tree(tmp_path / "shop", FILES)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        env[name] = str(tmp_path / name.lower())
    # Build the index first: the editor test then does not depend on when the background build ends.
    subprocess.run(
        [sys.executable, "-m", "repolm.cli", "index", str(root), "--json"],
        check=True,
        capture_output=True,
        env=env,
        timeout=TIMEOUT_S,
    )
    out = tmp_path / "result.json"
    init = tmp_path / "init.lua"
    server = [sys.executable, "-m", "repolm.cli", "serve"]
    init.write_text(INIT_LUA.format(plugin=lua_string(str(PLUGIN)), cmd=lua_list(server)))
    driver = tmp_path / "driver.lua"
    driver.write_text(
        DRIVER_LUA.format(
            out=lua_string(str(out)),
            root=lua_string(str(root)),
            timeout_ms=TIMEOUT_S * 1000,
            accept_key=lua_string("<C-l>"),
            cursor_line=CURSOR_LINE,
            typed=lua_string(TYPED),
            use_line=USE_LINE,
            use_col=USE_COL,
        )
    )
    command = [nvim, "--headless", "--clean", "-u", str(init), "-c", run_lua(driver)]
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S + 120
    )
    assert out.exists(), f"Neovim wrote no result (exit {run.returncode}):\n{run.stdout}\n{run.stderr}"
    result = json.loads(out.read_text())
    log = Path(result.get("lsp_log") or "/nonexistent")
    log_tail = log.read_text()[-3000:] if log.exists() else ""
    context = f"\nresult: {json.dumps(result, indent=1)}\nlsp.log: {log_tail}"
    assert result["errors"] == [], context
    assert result["filetype"] == "python"
    assert Path(result["root"]) == root, context  # found through repolm.toml, two levels up
    assert result["server_capabilities"] == {"inline": True, "hover": True}
    assert result["generation"] >= 1
    assert result["status_after_reindex"]["message"] == "index up to date", context

    # A completion that uses the function defined only in util/pricing.py, shown as ghost text.
    ghost = result["ghost"]
    assert ghost["mode"] == "i"
    assert (ghost["row"], ghost["col"]) == (CURSOR_LINE - 1, len(TYPED))
    assert ghost["virt_text_pos"] in ("overlay", "eol", "inline")
    assert (TYPED + ghost["virt_text"]).lstrip().startswith("total = apply_discount("), context
    # The accept key inserts it.
    assert result["accepted_line"] == TYPED + ghost["text"].split("\n")[0], context
    assert "apply_discount(" in result["accepted_line"]
    assert result["mode_after_accept"] == "i"

    # :RepolmExplain shows an explanation citing the definition.
    citation = f"util/pricing.py:{DEF_LINE}"
    assert citation in result["explain_text"], context
    assert citation in result["explain_float"], context
    assert "apply_discount" in result["explain_float"]
    assert result["streamed"] > 0, context  # the explanation was shown while it was written

    # The hover (vim.lsp.buf_request_sync) cites the other file and line too.
    assert citation in result["hover"], context
    assert "def apply_discount(price, percent):" in result["hover"]

    # :RepolmSearch fills the quickfix list; :RepolmStatus reports the index.
    first = result["quickfix"][0]
    assert first["file"] == str(root / "util" / "pricing.py"), context
    assert first["lnum"] >= 1
    assert "- generation: " in result["status_text"], context
    assert result["statusline"] == "repolm: ready", context


def test_neovim_ghost_text_rendering_and_accept(nvim: str, tmp_path: Path) -> None:
    """Ghost text placement and accepting, without a server: multi-line, mid-line and stale cases."""
    init = tmp_path / "init.lua"
    init.write_text(INIT_LUA.format(plugin=lua_string(str(PLUGIN)), cmd=lua_list(["repolm", "serve"])))
    out = tmp_path / "render.json"
    script = tmp_path / "render.lua"
    script.write_text(RENDER_LUA.format(out=lua_string(str(out))))
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    command = [nvim, "--headless", "--clean", "-u", str(init), "-c", run_lua(script)]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert out.exists(), f"Neovim wrote no result (exit {run.returncode}):\n{run.stdout}\n{run.stderr}"
    result = json.loads(out.read_text())
    assert result.get("error") is None, result
    at_eol = "inline" if result["nvim010"] else "overlay"
    mid_line = "inline" if result["nvim010"] else "eol"

    assert result["mode"] == "i"
    assert result["block_marks"] == [{"row": 1, "col": 4, "pos": at_eol, "text": "y = x * 2", "below": 1}]
    assert result["block_accepted"] is True
    assert result["block_lines"] == ["def f(x):", "    y = x * 2", "return y"]
    assert result["block_cursor"] == [3, len("return y")]
    assert result["block_marks_after"] == 0

    assert result["inline_marks"] == [{"row": 0, "col": 6, "pos": mid_line, "text": "'hi'", "below": 0}]
    assert result["inline_accepted"] is True
    assert result["inline_lines"] == ["print('hi')"]

    assert result["stale_accepted"] is False
    assert result["stale_lines"] == ["changed"]
    assert result["stale_marks"] == 0
