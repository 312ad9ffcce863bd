@echo off
REM Create the whisper_lora_env virtual environment and install everything whisper-lora needs.
setlocal
cd /d "%~dp0"
where python >nul 2>nul || (echo error: Python 3.9+ is not on PATH; install it from python.org & exit /b 1)
python -c "import sys; sys.exit(sys.version_info < (3, 9))" || (echo error: Python 3.9 or newer is needed & exit /b 1)
if not exist whisper_lora_env\Scripts\python.exe (
  echo Creating virtual environment whisper_lora_env ...
  python -m venv whisper_lora_env || exit /b 1
)
set PY=whisper_lora_env\Scripts\python.exe
%PY% -m pip install --upgrade pip || exit /b 1
REM PyTorch first: pick the CUDA build from pytorch.org for a GPU; the default wheel is fine for CPU.
%PY% -c "import torch" 2>nul || %PY% -m pip install "torch>=2.1,<3" || exit /b 1
%PY% -m pip install -r requirements.txt || exit /b 1
%PY% -c "import whisper_lora, torch; print(whisper_lora.__version__, torch.__version__, torch.cuda.is_available())"
echo.
echo Done. Activate the environment with:  whisper_lora_env\Scripts\activate
echo For the demo and tests install espeak-ng: https://github.com/espeak-ng/espeak-ng/releases
