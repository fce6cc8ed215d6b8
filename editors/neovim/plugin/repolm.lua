-- repolm: nothing starts until require("repolm").setup({...}) is called (see :help repolm).
if vim.g.loaded_repolm then
  return
end
vim.g.loaded_repolm = true
if vim.fn.has("nvim-0.7") == 0 then
  vim.api.nvim_err_writeln("repolm needs Neovim 0.7 or newer")
end
