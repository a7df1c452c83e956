{{/* Names and labels shared by every template. */}}

{{- define "openconnector.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of namespaced objects: <release>-<chart>, or <release> if it already contains the chart name. */}}
{{- define "openconnector.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Cluster-scoped objects carry the release namespace too: two releases of the same name in different
namespaces (one per tenant, each with watchNamespaces) must not overwrite each other's ClusterRoles. */}}
{{- define "openconnector.clusterName" -}}
{{- printf "%s:%s" .Release.Namespace (include "openconnector.fullname" .) }}
{{- end }}

{{- define "openconnector.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "openconnector.selectorLabels" -}}
app.kubernetes.io/name: {{ include "openconnector.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "openconnector.labels" -}}
helm.sh/chart: {{ include "openconnector.chart" . }}
{{ include "openconnector.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: openconnector
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "openconnector.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "openconnector.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "openconnector.rbacSubjects" -}}
- kind: ServiceAccount
  name: {{ include "openconnector.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{- define "openconnector.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Secret that holds the /events token: the user's, or the one this chart creates from eventsToken.value. */}}
{{- define "openconnector.eventsTokenSecret" -}}
{{- if .Values.eventsToken.existingSecret }}
{{- .Values.eventsToken.existingSecret }}
{{- else }}
{{- printf "%s-events-token" (include "openconnector.fullname" .) }}
{{- end }}
{{- end }}

{{- define "openconnector.eventsTokenDir" -}}
/etc/openconnector/events-token
{{- end }}

{{/* RBAC rules on the watched resources, the same in the ClusterRole and in each per-namespace Role.
Reading: our five kinds (Kopf watches them; the initial LIST builds the first routing table), Secrets and
ConfigMaps (credentials and settings that resources reference). Writing: only the status subresource
(merge patch) and new core/v1 Events. */}}
{{- define "openconnector.watchRules" -}}
- apiGroups: ["openconnector.nl"]
  resources: ["consumers", "events", "eventsubscriptions", "mappings", "sources"]
  verbs: ["list", "watch"]
- apiGroups: ["openconnector.nl"]
  resources: ["consumers/status", "events/status", "eventsubscriptions/status", "mappings/status", "sources/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["configmaps", "secrets"]
  verbs: ["list", "watch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}

{{/* Kopf's cluster-scoped discovery: it watches CRDs to notice resources appearing or changing, and, when
it serves a list of namespaces, lists and watches Namespaces to follow them. */}}
{{- define "openconnector.scanningRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- if .Values.watchNamespaces }}
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/* More than one pod may run (replicaCount > 1 or the HPA): the chart then adds a PodDisruptionBudget and
spreads the pods over nodes unless told otherwise (docs/operations.md, "High availability"). */}}
{{- define "openconnector.multiReplica" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The event bus (docs/operations.md, "Durable delivery on NATS JetStream"): the flags of `openconnector
run`, and the Secrets with NATS credentials and TLS material, mounted read-only. */}}
{{- define "openconnector.natsDir" -}}
/etc/openconnector/nats
{{- end }}

{{- define "openconnector.assertBus" -}}
{{- if and (eq .Values.bus.type "jetstream") (not .Values.bus.jetstream.url) }}
{{- fail "bus.type=jetstream needs bus.jetstream.url, the NATS server URL(s), e.g. nats://nats.nats.svc:4222" }}
{{- end }}
{{- if and .Values.bus.jetstream.tlsClientCert (not .Values.bus.jetstream.tlsSecret) }}
{{- fail "bus.jetstream.tlsClientCert needs bus.jetstream.tlsSecret, the Secret with tls.crt and tls.key" }}
{{- end }}
{{- end }}

{{- define "openconnector.busArgs" -}}
{{- if eq .Values.bus.type "jetstream" }}
{{- with .Values.bus.jetstream }}
- --bus=jetstream
- {{ printf "--nats-url=%s" .url | quote }}
{{- if .credentialsSecret }}
- --nats-creds={{ include "openconnector.natsDir" $ }}/creds/{{ .credentialsKey }}
{{- end }}
{{- if .tlsSecret }}
- --nats-tls-ca={{ include "openconnector.natsDir" $ }}/tls/ca.crt
{{- if .tlsClientCert }}
- --nats-tls-cert={{ include "openconnector.natsDir" $ }}/tls/tls.crt
- --nats-tls-key={{ include "openconnector.natsDir" $ }}/tls/tls.key
{{- end }}
{{- end }}
- --jetstream-stream={{ .stream }}
- --jetstream-replicas={{ int .replicas }}
- --jetstream-storage={{ .storage }}
- --jetstream-max-bytes={{ int64 .maxBytes }}
- --jetstream-max-age={{ .maxAge }}
- --jetstream-duplicate-window={{ .duplicateWindow }}
{{- end }}
{{- end }}
{{- end }}

{{- define "openconnector.busVolumeMounts" -}}
{{- if eq .Values.bus.type "jetstream" }}
{{- if .Values.bus.jetstream.credentialsSecret }}
- name: nats-creds
  mountPath: {{ include "openconnector.natsDir" . }}/creds
  readOnly: true
{{- end }}
{{- if .Values.bus.jetstream.tlsSecret }}
- name: nats-tls
  mountPath: {{ include "openconnector.natsDir" . }}/tls
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "openconnector.busVolumes" -}}
{{- if eq .Values.bus.type "jetstream" }}
{{- with .Values.bus.jetstream }}
{{- if .credentialsSecret }}
- name: nats-creds
  secret:
    secretName: {{ .credentialsSecret }}
    defaultMode: 0440
    items:
      - key: {{ .credentialsKey }}
        path: {{ .credentialsKey }}
{{- end }}
{{- if .tlsSecret }}
- name: nats-tls
  secret:
    secretName: {{ .tlsSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* The status shards' Leases (kube/lease.py): each replica's heartbeat and the holder Lease, in the
release namespace only. No list or watch: replicas are known from the shards they write. */}}
{{- define "openconnector.leaseRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "create", "update", "delete"]
{{- end }}
