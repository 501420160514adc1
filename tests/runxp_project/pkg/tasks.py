from experimaestro import Param, Task


class Square(Task):
    x: Param[int]

    def execute(self):
        (self.jobpath / "square.txt").write_text(str(self.x * self.x))
