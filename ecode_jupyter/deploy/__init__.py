"""Preview and deploy: run a project as a live app, proxy it, release it, export it.

Modules: ``detection`` (how to run a project), ``supervisor`` (keep it running), ``logs``
(its ring-buffered log), ``proxy`` (what crosses the proxy), ``backend`` and ``relay`` (to
the app and back), ``gateway`` and ``gateway_server`` (the preview origin's own process),
``releases`` (content-addressed snapshots), ``export`` (Dockerfile and Cloud Run service),
``manager`` (the DeployManager), ``tools`` (``start_preview`` / ``preview_status`` for the
tool layer). Imports stay lazy here so ``db.metadata`` can load ``deploy.models`` without
pulling in the managers.
"""
