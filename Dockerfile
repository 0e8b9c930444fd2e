# One image for every role: web workers, the dispatcher/scheduler, and one-shot commands (migrations, imports).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md Makefile ./
COPY bot ./bot
COPY channels ./channels
COPY dialogs ./dialogs
COPY knowledge ./knowledge
COPY scheduler ./scheduler
COPY storage ./storage
COPY authoring ./authoring
COPY bench ./bench
COPY standins ./standins
COPY simulation ./simulation
COPY courses ./courses
RUN pip install --upgrade pip && pip install . && python -m knowledge.install_tokenizer

RUN useradd --create-home lessonbot && mkdir -p /app/var && chown lessonbot /app/var
USER lessonbot
EXPOSE 8000
CMD ["lessonbot", "serve", "--host", "0.0.0.0", "--port", "8000"]
