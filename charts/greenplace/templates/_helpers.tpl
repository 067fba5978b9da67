{{/*
Names, labels and identities shared by every template.
*/}}

{{- define "greenplace.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "greenplace.fullname" -}}
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

{{- define "greenplace.selectorLabels" -}}
app.kubernetes.io/name: {{ include "greenplace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "greenplace.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "greenplace.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: greenplace
{{- end }}

{{- define "greenplace.serviceAccountName" -}}
{{- default (include "greenplace.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{/* The only user allowed to remove the placement gate. */}}
{{- define "greenplace.operatorUsername" -}}
{{- default (printf "system:serviceaccount:%s:%s" .Release.Namespace (include "greenplace.serviceAccountName" .)) .Values.admissionPolicy.operatorUsername }}
{{- end }}

{{- define "greenplace.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "greenplace.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "greenplace.fullname" .) }}
{{- end }}

{{/* Pod Security "restricted" for every container of the chart. */}}
{{- define "greenplace.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Where the Secrets of signalCredentials.secrets are mounted, one directory per Secret (the
operator's --credentials-dir).
*/}}
{{- define "greenplace.credentialsDir" -}}
/etc/greenplace/credentials
{{- end }}

{{- define "greenplace.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
fsGroup: {{ .Values.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Names and addresses the webhook's serving certificate must hold, as "ip:<a>" / "dns:<n>"
items joined by commas: the Service's DNS names, and the host of webhook.url when set.
*/}}
{{- define "greenplace.webhookHosts" -}}
{{- $svc := include "greenplace.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list (printf "dns:%s" $svc) (printf "dns:%s.%s" $svc $ns) (printf "dns:%s.%s.svc" $svc $ns) (printf "dns:%s.%s.svc.cluster.local" $svc $ns) }}
{{- with .Values.webhook.url }}
{{- $host := regexReplaceAll ":[0-9]+$" (urlParse .).host "" | trimPrefix "[" | trimSuffix "]" }}
{{- if or (regexMatch "^[0-9.]+$" $host) (contains ":" $host) }}
{{- $hosts = append $hosts (printf "ip:%s" $host) }}
{{- else }}
{{- $hosts = append $hosts (printf "dns:%s" $host) }}
{{- end }}
{{- end }}
{{- join "," $hosts }}
{{- end }}

{{/* The same hosts split for a certificate request, as JSON: {"ips": [...], "dns": [...]}. */}}
{{- define "greenplace.webhookSans" -}}
{{- $ips := list }}
{{- $dns := list }}
{{- range splitList "," (include "greenplace.webhookHosts" .) }}
{{- if hasPrefix "ip:" . }}
{{- $ips = append $ips (trimPrefix "ip:" .) }}
{{- else }}
{{- $dns = append $dns (trimPrefix "dns:" .) }}
{{- end }}
{{- end }}
{{- dict "ips" $ips "dns" $dns | toJson }}
{{- end }}

{{/*
The webhook's CA, serving certificate and key (base64), as JSON. Generated once per render
(memoised, so the Secret, the webhook's caBundle and the Deployment's checksum agree), and
reused from the existing Secret on upgrade while it was issued for the same hosts.
*/}}
{{- define "greenplace.webhookTls" -}}
{{- if not (hasKey .Values "__greenplaceWebhookTls") }}
{{- $hosts := include "greenplace.webhookHosts" . }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "greenplace.webhookSecretName" .) }}
{{- $issuedFor := "" }}
{{- if $secret }}
{{- $issuedFor = index ($secret.metadata.annotations | default dict) "greenplace.dev/certificate-hosts" | default "" }}
{{- end }}
{{- $tls := dict }}
{{- if and $secret (eq $issuedFor $hosts) }}
{{- $tls = dict "ca" (index $secret.data "ca.crt") "crt" (index $secret.data "tls.crt") "key" (index $secret.data "tls.key") }}
{{- else }}
{{- $sans := include "greenplace.webhookSans" . | fromJson }}
{{- $days := int .Values.webhook.certificate.validityDays }}
{{- $ca := genCA "greenplace-webhook-ca" $days }}
{{- $cert := genSignedCert (first $sans.dns) $sans.ips $sans.dns $days $ca }}
{{- $tls = dict "ca" ($ca.Cert | b64enc) "crt" ($cert.Cert | b64enc) "key" ($cert.Key | b64enc) }}
{{- end }}
{{- $_ := set .Values "__greenplaceWebhookTls" $tls }}
{{- end }}
{{- get .Values "__greenplaceWebhookTls" | toJson }}
{{- end }}

{{/* A list of strings as CEL string literals, comma-separated: 'a', 'b'. */}}
{{- define "greenplace.celStrings" -}}
{{- $quoted := list }}
{{- range . }}{{ $quoted = append $quoted (printf "'%s'" .) }}{{ end }}
{{- join ", " $quoted }}
{{- end }}

{{/*
"true" when the operator serves the gate webhook: gate.mode webhook, or the policy with Kueue
(the webhook then judges only pods carrying a Kueue record: the policy cannot verify its
signature; greenplace.controller.gatepolicy). Empty otherwise: no webhook, no certificate.
*/}}
{{- define "greenplace.webhookServed" -}}
{{- if or (eq .Values.gate.mode "webhook") .Values.kueue.enabled }}true{{ end }}
{{- end }}

{{/*
The Secret holding the ledger's Ed25519 key: ledger.keySecret, else the one the chart makes.
*/}}
{{- define "greenplace.ledgerKeySecret" -}}
{{- .Values.ledger.keySecret | default (printf "%s-ledger-key" (include "greenplace.fullname" .)) }}
{{- end }}
