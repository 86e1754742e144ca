#!/usr/bin/env bash
# DESIGN §1's manual procedure, as an operator scripts it, for one renewal of the offline kubeconfig:
# new key + CSR (openssl), CertificateSigningRequest created and approved (kubectl, as the cluster admin),
# wait for and fetch the certificate, assemble the kubeconfig with embedded certificates, prove it works.
# One-time steps (4: the ClusterRoleBinding, 5: fetch ca.crt) are done before timing, as the agent's are.
#
# usage: manual_renewal.sh <workdir> <admin-kubeconfig> <server> <ca.crt> <user> <key-type: ecdsa-p256|rsa-2048|rsa-4096>
set -euo pipefail
work=$1 admin=$2 server=$3 ca=$4 user=$5 key_type=$6
cd "$work"
name="$user-$(date +%s%N)"
case "$key_type" in
  ecdsa-p256) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
  rsa-2048) newkey=(-newkey rsa:2048) ;;
  rsa-4096) newkey=(-newkey rsa:4096) ;;
  *) echo "unknown key type $key_type" >&2; exit 2 ;;
esac
# 1. key and CSR
openssl req -new "${newkey[@]}" -nodes -days 365 -keyout admin.key -out admin.csr -subj "/CN=$user" 2>/dev/null
# 2. the CertificateSigningRequest, created and approved
cat > csr.yaml <<YAML
apiVersion: certificates.k8s.io/v1
kind: CertificateSigningRequest
metadata:
  name: $name
spec:
  request: $(base64 -w0 admin.csr)
  signerName: kubernetes.io/kube-apiserver-client
  usages:
  - client auth
YAML
kubectl --kubeconfig "$admin" create -f csr.yaml >/dev/null
kubectl --kubeconfig "$admin" certificate approve "$name" >/dev/null
# 3. the certificate
kubectl --kubeconfig "$admin" wait --for=jsonpath='{.status.certificate}' "csr/$name" --timeout=30s >/dev/null
kubectl --kubeconfig "$admin" get csr "$name" -o jsonpath='{.status.certificate}' | base64 --decode > admin.crt
# 6. the kubeconfig, certificates embedded (written next to the live one, then moved over it)
rm -f admin.kubeconfig.new
kubectl config --kubeconfig admin.kubeconfig.new set-cluster lab --server="$server" \
  --certificate-authority="$ca" --embed-certs=true >/dev/null
kubectl config --kubeconfig admin.kubeconfig.new set-credentials "$user" --client-certificate=admin.crt \
  --client-key=admin.key --embed-certs=true >/dev/null
kubectl config --kubeconfig admin.kubeconfig.new set-context lab --cluster=lab --user="$user" >/dev/null
kubectl config --kubeconfig admin.kubeconfig.new use-context lab >/dev/null
# prove it before using it, as the agent does
kubectl --kubeconfig admin.kubeconfig.new get svc kubernetes -n default >/dev/null
mv admin.kubeconfig.new admin.kubeconfig
kubectl --kubeconfig "$admin" delete csr "$name" >/dev/null
