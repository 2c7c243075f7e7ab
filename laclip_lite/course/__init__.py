"""The teaching side of the kit, apart from the core library (models, losses, data, rewrite, train, evaluate).

* `lesson01` ... `lesson04`: the plumbing behind each lesson notebook (data, training, figures, widgets); the
  concepts themselves are written out in the notebooks' cells and checked there against the library.
* `common`: what every lesson shares (checked parameters, out_dir, figures, metrics.json); `params`: the
  notebooks' declared parameters.
* `sweep`: papermill sweeps of the notebooks (`laclip-lite sweep`).
* `report`: the demo (`laclip-lite demo`); `assignments` + `checks`: the course assignments, released and graded
  by nbgrader, whose source notebooks ship in `assignments/`; `strip`: `make strip`.
"""
