"""Opens a file our C++ wrote, as a Python user would, and prints what it holds.
  check_saved.py state PATH ARCH NUM_CLASSES   torch.load(path) (weights_only=True, the default)
      then torchvision.models.ARCH(num_classes=...).load_state_dict(strict=True); prints
      'ok <sum of every tensor, float64>'
  check_saved.py dict PATH                      prints 'key type value' lines (tensors: sum)
  check_saved.py write PATH ARCH NUM_CLASSES   torch.save(torchvision model's state_dict()), prints
      'ok <sum of every tensor, float64>'
  check_saved.py write-legacy PATH ARCH NUM_CLASSES   the same in the legacy format
      (_use_new_zipfile_serialization=False, as torchvision's published weights)
  check_saved.py evil PATH MARKER [legacy]     torch.save of an object whose unpickling would run
      `touch MARKER` (a loader must refuse it, never run it)"""
import os, sys
import torch, torchvision

kind, path = sys.argv[1], sys.argv[2]
if kind in ('write', 'write-legacy'):
    sd = getattr(torchvision.models, sys.argv[3])(num_classes=int(sys.argv[4])).state_dict()
    torch.save(sd, path, _use_new_zipfile_serialization=kind == 'write')
    print(f'ok {sum(v.double().sum().item() for v in sd.values()):.10e}')
    sys.exit(0)
if kind == 'evil':
    class Evil:
        def __reduce__(self):
            return (os.system, ('touch ' + sys.argv[3],))
    torch.save({'fc.weight': torch.zeros(2, 2), 'payload': Evil()}, path,
               _use_new_zipfile_serialization=len(sys.argv) < 5)
    print('ok')
    sys.exit(0)
obj = torch.load(path)  # weights_only=True by default since torch 2.6
if kind == 'state':
    model = getattr(torchvision.models, sys.argv[3])(num_classes=int(sys.argv[4]))
    model.load_state_dict(obj, strict=True)
    total = sum(v.double().sum().item() for v in obj.values())
    print(f'ok {type(obj).__name__} {total:.10e}')
else:
    for k, v in obj.items():
        print(k, type(v).__name__, f'{v.double().sum().item():.10e}' if torch.is_tensor(v) else v)
