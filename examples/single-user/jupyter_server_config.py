# A single-user JupyterLab with E-Code: `jupyter lab --config examples/single-user/jupyter_server_config.py`
c = get_config()  # noqa: F821  (injected by Jupyter)

# Projects appear under this folder in Lab's file browser (default: ecode-projects/ in root_dir).
# c.EcodeApp.workspace_root = "~/ecode-projects"

# Deleted projects stay restorable this many days.
c.EcodeApp.trash_retention_days = 30
