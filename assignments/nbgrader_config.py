"""nbgrader configuration of the course's homework (used by `make assignments`)."""

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.course_id = "kd-course"
# What a released notebook shows in place of a solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
# The MNIST part trains two small models; give each cell a generous but finite bound.
c.Execute.timeout = 600
c.Execute.startup_timeout = 120
