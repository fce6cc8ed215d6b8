-- repolm for Neovim: starts `repolm serve` for buffers of supported languages and adds ghost-text
-- completions, explanations, search and reindexing on top of the built-in LSP client.
--
-- Works on Neovim 0.7 (vim.lsp.start_client + vim.lsp.buf_attach_client) and 0.8+ (vim.lsp.start).
-- Only APIs present in 0.7 are used outside version checks: no vim.fs, no vim.system.

local M = {}

local api = vim.api
local uv = vim.uv or vim.loop

local defaults = {
  -- The server command, as a list.
  cmd = { "repolm", "serve" },
  -- Filetypes the server is started for.
  filetypes = { "python", "javascript", "javascriptreact", "typescript", "typescriptreact", "go", "rust", "java" },
  -- Files or folders that mark the repository root (nearest wins); the current directory otherwise.
  root_markers = { ".git", "repolm.toml" },
  -- Insert-mode key that accepts the ghost text; it behaves as usual when there is none.
  accept_key = "<C-l>",
  -- Optional insert-mode key that hides the ghost text (e.g. "<C-]>"); nil: none.
  dismiss_key = nil,
  -- Milliseconds after the last keystroke before a completion request.
  debounce_ms = 150,
  -- Ask for completions while typing (InsertEnter, TextChangedI); false: only on :RepolmComplete.
  auto_trigger = true,
  -- Sent as initializationOptions, e.g. { repolm = { model = "...", completion = { maxTokens = 16 } } }.
  init_options = nil,
  -- Highlight group of the ghost text.
  ghost_hl = "Comment",
  -- Where explanations go: "float" (a floating window) or "split" (a scratch buffer in a split).
  explain_view = "float",
  -- Number of hits :RepolmSearch puts in the quickfix list.
  search_k = 20,
}

M.config = vim.deepcopy(defaults)
M.ns = api.nvim_create_namespace("repolm_ghost")

local has_08 = vim.fn.has("nvim-0.8") == 1
local has_010 = vim.fn.has("nvim-0.10") == 1

-- client id per root (0.7 path), status per client id, ghost text per buffer, timers per buffer
local clients = {}
local status = {}
local ghosts = {}
local timers = {}
local pending = {}
-- explanations being streamed: work-done token -> function(text so far)
local streams = {}
local stream_serial = 0

local has_011 = vim.fn.has("nvim-0.11") == 1

-- Client methods are called with ":" from 0.11 on (the "." form is deprecated there).
local function client_request(client, method, params, handler, bufnr)
  if has_011 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

local function client_notify(client, method, params)
  if has_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

local function client_cancel(client, id)
  if has_011 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

--- Clients of a buffer (bufnr) or all clients (nil), across versions.
local function list_clients(bufnr)
  if vim.lsp.get_clients then -- 0.10+
    return vim.lsp.get_clients(bufnr and { bufnr = bufnr } or nil)
  end
  if bufnr then
    return vim.tbl_values(vim.lsp.buf_get_clients(bufnr))
  end
  return vim.lsp.get_active_clients()
end

local function notify(message, level)
  vim.notify("repolm: " .. message, level or vim.log.levels.INFO)
end

-- ---------------------------------------------------------------------------------------------------------
-- Root and client

local function exists(path)
  return uv.fs_stat(path) ~= nil
end

--- The nearest folder above `path` holding a root marker, else the current directory.
function M.find_root(path)
  local dir = path ~= "" and vim.fn.fnamemodify(path, ":p:h") or vim.fn.getcwd()
  while true do
    for _, marker in ipairs(M.config.root_markers) do
      if exists(dir .. "/" .. marker) then
        return dir
      end
    end
    local parent = vim.fn.fnamemodify(dir, ":h")
    if parent == dir then
      return vim.fn.getcwd()
    end
    dir = parent
  end
end

local function set_status(client_id, fields)
  local current = status[client_id] or {}
  for key, value in pairs(fields) do
    if value == false then -- false clears a field (nil would not be seen by pairs)
      current[key] = nil
    else
      current[key] = value
    end
  end
  status[client_id] = current
  pcall(vim.cmd, "doautocmd <nomodeline> User RepolmStatus")
end

local function progress_handler(err, result, ctx, config)
  local stream = result and streams[result.token]
  if stream then -- an explanation's text so far, not the server's indexing progress
    if type(result.value) == "table" and type(result.value.message) == "string" then
      stream(result.value.message)
    end
    return
  end
  local value = result and result.value
  if type(value) == "table" and value.kind then
    if value.kind == "end" then
      local failed = (value.message or ""):find("failed") ~= nil
      set_status(ctx.client_id, { state = failed and "error" or "ready", progress = false, message = value.message })
    else
      local percent = value.percentage and (value.percentage .. "%") or nil
      set_status(ctx.client_id, {
        state = "indexing",
        progress = percent or false,
        message = value.message or value.title,
      })
    end
  end
  local default = vim.lsp.handlers["$/progress"]
  if default then
    return default(err, result, ctx, config)
  end
end

local function client_config(root)
  local capabilities = vim.lsp.protocol.make_client_capabilities()
  capabilities.window = capabilities.window or {}
  capabilities.window.workDoneProgress = true
  capabilities.textDocument = capabilities.textDocument or {}
  capabilities.textDocument.inlineCompletion = { dynamicRegistration = false }
  return {
    name = "repolm",
    cmd = M.config.cmd,
    cmd_cwd = root,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fn.fnamemodify(root, ":t") } },
    init_options = M.config.init_options,
    capabilities = capabilities,
    handlers = { ["$/progress"] = progress_handler },
    on_init = function(client)
      set_status(client.id, { state = "ready", root = root })
    end,
    on_exit = function(code, signal, client_id)
      set_status(client_id, { state = "stopped", progress = false, message = "exit code " .. tostring(code) })
      for key, id in pairs(clients) do
        if id == client_id then
          clients[key] = nil
        end
      end
    end,
  }
end

--- The repolm client attached to a buffer, if any.
function M.get_client(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  for _, client in ipairs(list_clients(bufnr)) do
    if client.name == "repolm" then
      return client
    end
  end
  return nil
end

--- Start (or reuse) the server for the buffer's repository and attach the buffer to it.
function M.attach(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  if not api.nvim_buf_is_valid(bufnr) or vim.bo[bufnr].buftype ~= "" or M.get_client(bufnr) then
    return
  end
  local root = M.find_root(api.nvim_buf_get_name(bufnr))
  local client_id
  if has_08 then
    local config = client_config(root)
    api.nvim_buf_call(bufnr, function()
      client_id = vim.lsp.start(config, { bufnr = bufnr })
    end)
  else
    client_id = clients[root]
    if client_id == nil or vim.lsp.get_client_by_id(client_id) == nil then
      client_id = vim.lsp.start_client(client_config(root))
      if client_id == nil then
        notify("could not start " .. table.concat(M.config.cmd, " "), vim.log.levels.ERROR)
        return
      end
      clients[root] = client_id
      set_status(client_id, { state = "starting", root = root })
    end
    vim.lsp.buf_attach_client(bufnr, client_id)
  end
  if client_id ~= nil and status[client_id] == nil then
    set_status(client_id, { state = "starting", root = root })
  end
  M._buffer_setup(bufnr)
end

-- ---------------------------------------------------------------------------------------------------------
-- Positions

local function encoding(client)
  return client.offset_encoding or "utf-16"
end

--- LSP position of the cursor (0-based line, character in the client's encoding).
local function cursor_position(client, win)
  local row, col = unpack(api.nvim_win_get_cursor(win or 0))
  local line = api.nvim_buf_get_lines(api.nvim_win_get_buf(win or 0), row - 1, row, false)[1] or ""
  local character = math.min(col, #line)
  if encoding(client) ~= "utf-8" then
    if has_011 then -- vim.str_utfindex(s, encoding, index) from 0.11 on
      character = vim.str_utfindex(line, encoding(client), character, false)
    else
      local utf32, utf16 = vim.str_utfindex(line, character)
      character = encoding(client) == "utf-32" and utf32 or utf16
    end
  end
  return { line = row - 1, character = character }, row - 1, col, line
end

local function byte_col(client, line, character)
  if encoding(client) == "utf-8" then
    return math.min(character, #line)
  end
  local ok, col
  if has_011 then
    ok, col = pcall(vim.str_byteindex, line, encoding(client), character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding(client) == "utf-16")
  end
  return ok and math.min(col, #line) or #line
end

-- ---------------------------------------------------------------------------------------------------------
-- Ghost text

--- Hide the ghost text of a buffer.
function M.clear(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  ghosts[bufnr] = nil
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

--- The ghost text shown in a buffer: { row = 0-based, col = byte, text = "..." } or nil.
function M.ghost(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  return ghosts[bufnr]
end

local function show(bufnr, row, col, text)
  M.clear(bufnr)
  if text == "" then
    return
  end
  local lines = vim.split(text, "\n", { plain = true })
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
  local hl = M.config.ghost_hl
  local opts = { virt_text = { { lines[1], hl } }, hl_mode = "combine" }
  if has_010 then
    opts.virt_text_pos = "inline"
  elseif col >= #line then
    opts.virt_text_pos = "overlay" -- at the end of the line: shown exactly where it would be inserted
  else
    opts.virt_text_pos = "eol" -- text after the cursor must stay visible
  end
  if #lines > 1 then
    local below = {}
    for i = 2, #lines do
      table.insert(below, { { lines[i], hl } })
    end
    opts.virt_lines = below
  end
  api.nvim_buf_set_extmark(bufnr, M.ns, row, math.min(col, #line), opts)
  ghosts[bufnr] = { row = row, col = col, text = text, tick = api.nvim_buf_get_changedtick(bufnr) }
end

M._show = show -- for tests

local function first_item(result)
  if type(result) ~= "table" then
    return nil
  end
  local items = result.items or result
  if type(items) ~= "table" or items[1] == nil then
    return nil
  end
  return items[1]
end

--- The text to insert at the cursor from an inline completion item (or a completion item).
local function item_text(client, item, row, col, line)
  local text = item.insertText or (item.textEdit and item.textEdit.newText) or item.label
  if type(text) == "table" then
    text = text.value -- a StringValue (snippet): shown as is
  end
  if type(text) ~= "string" then
    return nil
  end
  local range = item.range or (item.textEdit and (item.textEdit.range or item.textEdit.insert))
  if range and range.start.line == row then
    local start = byte_col(client, line, range.start.character)
    if start < col then -- the item replaces what was typed since `start`: show the rest
      local typed = line:sub(start + 1, col)
      if text:sub(1, #typed) ~= typed then
        return nil
      end
      text = text:sub(#typed + 1)
    end
  end
  return text
end

local function cancel_pending(bufnr)
  local request = pending[bufnr]
  pending[bufnr] = nil
  if request then
    pcall(client_cancel, request.client, request.id)
  end
end

--- Ask the server for a completion at the cursor and show it as ghost text.
function M.request_completion(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local client = M.get_client(bufnr)
  if client == nil or api.nvim_get_current_buf() ~= bufnr then
    return
  end
  cancel_pending(bufnr)
  local position, row, col, line = cursor_position(client)
  local uri = vim.uri_from_bufnr(bufnr)
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local caps = client.server_capabilities or client.resolved_capabilities or {}
  local method, params
  if caps.inlineCompletionProvider then
    method = "textDocument/inlineCompletion"
    params = { textDocument = { uri = uri }, position = position, context = { triggerKind = 2 } }
  else
    method = "textDocument/completion"
    params = { textDocument = { uri = uri }, position = position }
  end
  local ok, id
  ok, id = client_request(client, method, params, function(err, result)
    if pending[bufnr] and pending[bufnr].id == id then
      pending[bufnr] = nil
    end
    if err or not api.nvim_buf_is_valid(bufnr) then
      return
    end
    -- Stale answers (the user typed or moved meanwhile, or left insert mode) are dropped.
    if api.nvim_get_current_buf() ~= bufnr or api.nvim_buf_get_changedtick(bufnr) ~= tick then
      return
    end
    local now_row, now_col = unpack(api.nvim_win_get_cursor(0))
    if now_row - 1 ~= row or now_col ~= col or not vim.fn.mode():match("^[iR]") then
      return
    end
    local item = first_item(result)
    local text = item and item_text(client, item, row, col, line)
    if text and text ~= "" then
      show(bufnr, row, col, text)
    end
  end, bufnr)
  if ok then
    pending[bufnr] = { client = client, id = id }
  end
end

--- Request after `debounce_ms` without keystrokes.
function M.schedule_completion(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  M.clear(bufnr)
  local timer = timers[bufnr]
  if timer == nil then
    timer = uv.new_timer()
    timers[bufnr] = timer
  end
  timer:stop()
  timer:start(M.config.debounce_ms, 0, vim.schedule_wrap(function()
    if api.nvim_buf_is_valid(bufnr) and vim.fn.mode():match("^[iR]") then
      M.request_completion(bufnr)
    end
  end))
end

--- Insert the ghost text at the cursor. Returns true when there was one.
function M.accept(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local ghost = ghosts[bufnr]
  if ghost == nil then
    return false
  end
  local row, col = unpack(api.nvim_win_get_cursor(0))
  if row - 1 ~= ghost.row or col ~= ghost.col or api.nvim_buf_get_changedtick(bufnr) ~= ghost.tick then
    M.clear(bufnr)
    return false
  end
  M.clear(bufnr)
  local lines = vim.split(ghost.text, "\n", { plain = true })
  api.nvim_buf_set_text(bufnr, ghost.row, ghost.col, ghost.row, ghost.col, lines)
  local last_row = ghost.row + #lines - 1
  local last_col = #lines == 1 and ghost.col + #lines[1] or #lines[#lines]
  api.nvim_win_set_cursor(0, { last_row + 1, last_col })
  return true
end

local function feed(key)
  api.nvim_feedkeys(api.nvim_replace_termcodes(key, true, false, true), "n", false)
end

function M._buffer_setup(bufnr)
  if vim.b[bufnr].repolm_attached then
    return
  end
  vim.b[bufnr].repolm_attached = true
  local group = api.nvim_create_augroup("repolm_buffer_" .. bufnr, { clear = true })
  if M.config.auto_trigger then
    api.nvim_create_autocmd({ "InsertEnter", "TextChangedI", "TextChangedP" }, {
      group = group,
      buffer = bufnr,
      callback = function()
        M.schedule_completion(bufnr)
      end,
    })
  end
  api.nvim_create_autocmd("CursorMovedI", {
    group = group,
    buffer = bufnr,
    callback = function()
      local ghost = ghosts[bufnr]
      if ghost then
        local row, col = unpack(api.nvim_win_get_cursor(0))
        if row - 1 ~= ghost.row or col ~= ghost.col then
          M.clear(bufnr)
        end
      end
    end,
  })
  api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      local timer = timers[bufnr]
      if timer then
        timer:stop()
      end
      cancel_pending(bufnr)
      M.clear(bufnr)
    end,
  })
  api.nvim_create_autocmd({ "BufWipeout", "BufDelete" }, {
    group = group,
    buffer = bufnr,
    callback = function()
      local timer = timers[bufnr]
      timers[bufnr] = nil
      if timer then
        timer:stop()
        timer:close()
      end
      ghosts[bufnr] = nil
      pending[bufnr] = nil
    end,
  })
  if M.config.accept_key then
    local key = M.config.accept_key
    vim.keymap.set("i", key, function()
      if not M.accept(bufnr) then
        feed(key)
      end
    end, { buffer = bufnr, desc = "repolm: accept the completion" })
  end
  if M.config.dismiss_key then
    local key = M.config.dismiss_key
    vim.keymap.set("i", key, function()
      if ghosts[bufnr] then
        M.clear(bufnr)
      else
        feed(key)
      end
    end, { buffer = bufnr, desc = "repolm: dismiss the completion" })
  end
end

-- ---------------------------------------------------------------------------------------------------------
-- Commands

local function client_or_warn(bufnr)
  local client = M.get_client(bufnr)
  if client == nil then
    notify("no repolm server for this buffer (filetype '" .. vim.bo.filetype .. "')", vim.log.levels.WARN)
  end
  return client
end

-- `done`, if given, is called first whether the command succeeded or not.
local function execute(client, bufnr, command, arguments, callback, done)
  return client_request(client, "workspace/executeCommand", { command = command, arguments = arguments },
    function(err, result)
      if done then
        done()
      end
      if err then
        notify(command .. " failed: " .. (err.message or vim.inspect(err)), vim.log.levels.ERROR)
        return
      end
      callback(result)
    end, bufnr)
end

--- The markdown lines of a `repolm.explain` answer.
function M.explanation_lines(result)
  local lines = {}
  local function add(text)
    for _, line in ipairs(vim.split(text or "", "\n", { plain = true })) do
      table.insert(lines, line)
    end
  end
  if type(result) ~= "table" then
    return { "No explanation." }
  end
  if result.card == nil or result.card == vim.NIL then
    add(result.explanation or "Nothing to explain here.")
    return lines
  end
  add(result.card_markdown or (result.card.qualname .. " — " .. result.card.location))
  if type(result.explanation) == "string" and result.explanation ~= "" then
    add("")
    add("---")
    add("")
    add(result.explanation)
  end
  return lines
end

M.last_explanation = nil -- the last answer of :RepolmExplain, as markdown
M.streamed = {} -- the texts streamed while it was written

local split_buf = nil -- the split view's buffer, reused while it is shown
local stream_win = nil -- the float showing a streamed explanation

-- `streaming`: the float is replaced on each update and never takes the focus.
local function show_lines(lines, name, streaming)
  if M.config.explain_view == "split" then
    if not (split_buf and api.nvim_buf_is_valid(split_buf)) then
      vim.cmd("botright new")
      split_buf = api.nvim_get_current_buf()
      vim.bo[split_buf].buftype = "nofile"
      vim.bo[split_buf].bufhidden = "wipe"
      vim.bo[split_buf].swapfile = false
      pcall(api.nvim_buf_set_name, split_buf, "repolm://" .. name)
      vim.bo[split_buf].filetype = "markdown"
    end
    vim.bo[split_buf].modifiable = true
    api.nvim_buf_set_lines(split_buf, 0, -1, false, lines)
    vim.bo[split_buf].modifiable = false
    return split_buf, vim.fn.bufwinid(split_buf)
  end
  if stream_win and api.nvim_win_is_valid(stream_win) then
    api.nvim_win_close(stream_win, true)
  end
  stream_win = nil
  local buf, win = vim.lsp.util.open_floating_preview(lines, "markdown", {
    border = "rounded",
    max_width = math.max(40, math.floor(vim.o.columns * 0.8)),
    max_height = math.max(10, math.floor(vim.o.lines * 0.8)),
    focus_id = "repolm_explain",
    focus = not streaming,
  })
  if streaming then
    stream_win = win
  end
  return buf, win
end

--- :RepolmExplain [symbol]: explain the symbol under the cursor (or the named symbol). The text shows
--- as the model writes it; the answer checked against its sources replaces it.
function M.explain(symbol)
  local bufnr = api.nvim_get_current_buf()
  local client = client_or_warn(bufnr)
  if client == nil then
    return
  end
  local argument
  if symbol and symbol ~= "" then
    argument = { symbol = symbol }
  else
    local position = cursor_position(client)
    argument = { uri = vim.uri_from_bufnr(bufnr), line = position.line, character = position.character }
  end
  stream_serial = stream_serial + 1
  local token = "repolm-explain-" .. stream_serial
  argument.workDoneToken = token
  M.last_explanation = nil
  M.streamed = {}
  streams[token] = function(text)
    table.insert(M.streamed, text)
    local lines = { "*explaining…*", "" }
    vim.list_extend(lines, vim.split(text .. " …", "\n", { plain = true }))
    show_lines(lines, "explain", true)
  end
  notify("explaining…")
  execute(client, bufnr, "repolm.explain", { argument }, function(result)
    local lines = M.explanation_lines(result)
    M.last_explanation = table.concat(lines, "\n")
    show_lines(lines, "explain")
  end, function()
    streams[token] = nil
  end)
end

--- :RepolmReindex: update the index now.
function M.reindex()
  local bufnr = api.nvim_get_current_buf()
  local client = client_or_warn(bufnr)
  if client == nil then
    return
  end
  set_status(client.id, { state = "indexing" })
  execute(client, bufnr, "repolm.reindex", {}, function(result)
    if type(result) == "table" and result.done then
      notify("index up to date (generation " .. tostring(result.generation) .. ")")
    else
      notify("reindexing continues in the background")
    end
  end)
end

--- :RepolmSearch {query}: hits into the quickfix list.
function M.search(query)
  local bufnr = api.nvim_get_current_buf()
  local client = client_or_warn(bufnr)
  if client == nil then
    return
  end
  if query == nil or query:match("^%s*$") then
    notify("usage: :RepolmSearch {query}", vim.log.levels.WARN)
    return
  end
  local root = (status[client.id] and status[client.id].root) or client.config.root_dir or vim.fn.getcwd()
  execute(client, bufnr, "repolm.search", { { query = query, k = M.config.search_k } }, function(hits)
    local items = {}
    for _, hit in ipairs(type(hits) == "table" and hits or {}) do
      local symbol = (hit.symbol ~= nil and hit.symbol ~= vim.NIL and hit.symbol ~= "") and hit.symbol or hit.path
      table.insert(items, {
        filename = root .. "/" .. hit.path,
        lnum = hit.start_line,
        end_lnum = hit.end_line,
        col = 1,
        text = string.format("%s [%s] %.3f", symbol, hit.kind or "chunk", tonumber(hit.score) or 0),
      })
    end
    vim.fn.setqflist({}, " ", { title = "repolm: " .. query, items = items })
    if #items == 0 then
      notify("no results for " .. query)
    else
      vim.cmd("copen")
    end
  end)
end

--- Status of the repolm client of a buffer: { state, progress, message, root } (state "stopped" if none).
function M.status(bufnr)
  local client = M.get_client(bufnr)
  if client == nil then
    return { state = "stopped" }
  end
  return vim.deepcopy(status[client.id] or { state = "starting" })
end

--- A short text for a statusline: "repolm: indexing 40%".
function M.statusline(bufnr)
  local current = M.status(bufnr)
  return "repolm: " .. current.state .. (current.progress and (" " .. current.progress) or "")
end

local function status_command(root)
  local cmd = vim.deepcopy(M.config.cmd)
  if cmd[#cmd] ~= "serve" then
    return nil
  end
  cmd[#cmd] = "status"
  table.insert(cmd, root)
  table.insert(cmd, "--json")
  return cmd
end

--- :RepolmStatus: server state and progress, settings, and the index (`repolm status --json`).
function M.show_status()
  local bufnr = api.nvim_get_current_buf()
  local client = M.get_client(bufnr)
  local current = M.status(bufnr)
  local root = current.root or M.find_root(api.nvim_buf_get_name(bufnr))
  local settings = (M.config.init_options and M.config.init_options.repolm) or M.config.init_options or {}
  local lines = {
    "# repolm status",
    "",
    "- server: " .. current.state .. (current.progress and (" " .. current.progress) or "")
      .. (current.message and (" (" .. current.message .. ")") or ""),
    "- root: " .. root,
    "- command: " .. table.concat(M.config.cmd, " "),
    "- model: " .. ((type(settings.model) == "string" and settings.model ~= "") and settings.model or "default"),
    "- adapter: " .. ((type(settings.adapter) == "string" and settings.adapter ~= "") and settings.adapter or "none"),
  }
  if client == nil then
    table.insert(lines, "- no repolm client is attached to this buffer")
  end
  local cmd = status_command(root)
  if cmd == nil then
    show_lines(lines, "status")
    return
  end
  local output = {}
  vim.fn.jobstart(cmd, {
    stdout_buffered = true,
    stderr_buffered = true,
    on_stdout = function(_, data)
      output = data or {}
    end,
    on_exit = function(_, code)
      vim.schedule(function()
        table.insert(lines, "")
        table.insert(lines, "## Index")
        table.insert(lines, "")
        local ok, index = pcall(vim.fn.json_decode, table.concat(output, "\n"))
        if code ~= 0 or not ok or type(index) ~= "table" then
          table.insert(lines, "- no index yet (" .. table.concat(cmd, " ") .. " exited with " .. code .. ")")
        else
          for _, key in ipairs({ "generation", "files", "chunks", "redactions", "index_dir" }) do
            if index[key] ~= nil then
              table.insert(lines, "- " .. key .. ": " .. tostring(index[key]))
            end
          end
          if type(index.languages) == "table" then
            local parts = {}
            for name, count in pairs(index.languages) do
              table.insert(parts, name .. " " .. tostring(count))
            end
            table.sort(parts)
            table.insert(lines, "- languages: " .. table.concat(parts, ", "))
          end
        end
        M.last_status = table.concat(lines, "\n")
        show_lines(lines, "status")
      end)
    end,
  })
end

--- Send new settings to every running repolm server (workspace/didChangeConfiguration).
function M.update_settings(init_options)
  M.config.init_options = init_options
  for _, client in ipairs(list_clients(nil)) do
    if client.name == "repolm" then
      client_notify(client, "workspace/didChangeConfiguration", { settings = init_options or vim.empty_dict() })
    end
  end
end

-- ---------------------------------------------------------------------------------------------------------
-- Setup

local function define_commands()
  local command = api.nvim_create_user_command
  command("RepolmExplain", function(args)
    M.explain(args.args)
  end, { nargs = "?", desc = "repolm: explain the symbol under the cursor (or the one named)" })
  command("RepolmReindex", function()
    M.reindex()
  end, { nargs = 0, desc = "repolm: update the index" })
  command("RepolmSearch", function(args)
    M.search(args.args)
  end, { nargs = "+", desc = "repolm: search the codebase into the quickfix list" })
  command("RepolmStatus", function()
    M.show_status()
  end, { nargs = 0, desc = "repolm: server, index and adapter status" })
  command("RepolmComplete", function()
    M.request_completion()
  end, { nargs = 0, desc = "repolm: ask for a completion at the cursor now" })
end

--- Configure the plugin and start the server for buffers of the configured filetypes.
function M.setup(opts)
  M.config = vim.tbl_deep_extend("force", vim.deepcopy(defaults), opts or {})
  if opts and opts.cmd then
    M.config.cmd = opts.cmd -- lists are replaced, not merged
  end
  if opts and opts.filetypes then
    M.config.filetypes = opts.filetypes
  end
  if type(M.config.cmd) == "string" then
    M.config.cmd = { M.config.cmd }
  end
  vim.cmd("highlight default link RepolmGhost " .. M.config.ghost_hl)
  define_commands()
  local group = api.nvim_create_augroup("repolm", { clear = true })
  api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = M.config.filetypes,
    callback = function(args)
      M.attach(args.buf)
    end,
  })
  -- Buffers already open when setup() runs.
  local wanted = {}
  for _, filetype in ipairs(M.config.filetypes) do
    wanted[filetype] = true
  end
  for _, bufnr in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(bufnr) and wanted[vim.bo[bufnr].filetype] then
      M.attach(bufnr)
    end
  end
end

return M
