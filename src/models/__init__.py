"""LightningModules; `nets/` holds the plain `nn.Module` networks they wrap."""
