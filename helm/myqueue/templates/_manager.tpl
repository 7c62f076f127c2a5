{{/*
One manager Deployment + Service; both roles share this template.
Call with (dict "ctx" $ "role" "primary"|"replica").
*/}}
{{- define "myqueue.manager" -}}
{{- $ := .ctx }}
{{- $role := .role }}
{{- $v := index $.Values.manager $role }}
{{- $name := include (printf "myqueue.%s.name" $role) $ }}
{{- $port := ternary 5000 5001 (eq $role "primary") }}
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "myqueue.labels" (dict "ctx" $ "component" $role) | nindent 4 }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- include "myqueue.selectorLabels" (dict "ctx" $ "component" $role) | nindent 4 }}
  ports:
    - name: http
      port: {{ $v.service.port }}
      targetPort: http
      protocol: TCP
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $.Release.Namespace }}
  labels:
    {{- include "myqueue.labels" (dict "ctx" $ "component" $role) | nindent 4 }}
spec:
  # One pod: the primary is the single writer of the configuration, the replica allocates
  # consumer ids. Recreate: an upgrade never runs two of either at once.
  replicas: 1
  strategy:
    type: Recreate
  selector:
    matchLabels:
      {{- include "myqueue.selectorLabels" (dict "ctx" $ "component" $role) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "myqueue.labels" (dict "ctx" $ "component" $role) | nindent 8 }}
      {{- with $v.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ $name }}
      automountServiceAccountToken: {{ eq $role "primary" }}
      {{- with $.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- range . }}
        - name: {{ . }}
        {{- end }}
      {{- end }}
      securityContext:
        {{- include "myqueue.podSecurityContext" 10001 | nindent 8 }}
      initContainers:
        # Wait for PostgreSQL so the manager does not crash-loop while it starts.
        - name: wait-for-postgresql
          image: {{ include "myqueue.image" (dict "ctx" $ "image" $.Values.manager.image) | quote }}
          imagePullPolicy: {{ $.Values.manager.image.pullPolicy }}
          command:
            - python
            - -c
            - |
              import os, sys, time
              import psycopg2
              deadline = time.monotonic() + {{ $.Values.manager.waitForPostgresSeconds }}
              while True:
                  try:
                      psycopg2.connect(os.environ["MYQUEUE_DSN"], connect_timeout=3).close()
                      sys.exit(0)
                  except psycopg2.OperationalError as e:
                      if time.monotonic() > deadline:
                          sys.exit(f"PostgreSQL not reachable: {e}")
                      print("waiting for PostgreSQL", flush=True)
                      time.sleep(2)
          env:
            {{- include "myqueue.dsnEnv" $ | nindent 12 }}
          securityContext:
            {{- include "myqueue.containerSecurityContext" $ | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            {{- include "myqueue.tmpMount" $ | nindent 12 }}
      containers:
        - name: manager
          image: {{ include "myqueue.image" (dict "ctx" $ "image" $.Values.manager.image) | quote }}
          imagePullPolicy: {{ $.Values.manager.image.pullPolicy }}
          args: ["--threads", {{ $.Values.manager.threads | quote }}]
          env:
            - name: MYQUEUE_ROLE
              value: {{ $role }}
            - name: MYQUEUE_HOST
              value: "0.0.0.0"
            - name: MYQUEUE_PORT
              value: {{ $port | quote }}
            - name: MYQUEUE_STORE
              value: postgres
            {{- include "myqueue.dsnEnv" $ | nindent 12 }}
            - name: MYQUEUE_LOG_LEVEL
              value: {{ $.Values.manager.logLevel | quote }}
            - name: MYQUEUE_LOG_FORMAT
              value: {{ $.Values.logFormat | quote }}
            {{- include "myqueue.tokenEnv" $ | nindent 12 }}
            {{- if eq $role "primary" }}
            # /brokers/add and /brokers/rm create and delete Broker resources in this namespace.
            - name: MYQUEUE_LAUNCHER
              value: kubernetes
            - name: MYQUEUE_NAMESPACE
              valueFrom:
                fieldRef:
                  fieldPath: metadata.namespace
            - name: MYQUEUE_BROKER_STORE
              value: {{ $.Values.brokers.store | quote }}
            {{- else }}
            - name: MYQUEUE_PRIMARY_URL
              value: {{ include "myqueue.primary.url" $ | quote }}
            {{- end }}
          ports:
            - name: http
              containerPort: {{ $port }}
              protocol: TCP
          # The event log is replayed before the server listens: give start-up its own budget.
          startupProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: /healthz
              port: http
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /readyz
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          securityContext:
            {{- include "myqueue.containerSecurityContext" $ | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            {{- include "myqueue.tmpMount" $ | nindent 12 }}
      volumes:
        {{- include "myqueue.tmpVolume" $ | nindent 8 }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
