"""The glass box: tools that show what training does, built on the public core only.

``explain`` (one training step with its numbers), ``gradcheck`` (backpropagation against
finite differences), ``diagnostics`` (named faults during training), ``lr_finder``, ``plots`` and
``report`` (the HTML training report).
"""
