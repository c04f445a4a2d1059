// Azure resources for the ADO Boards sync bundle: one Flex Consumption (FC1) Python function app
// with a user-assigned identity, identity-only storage (host storage, deployment container, queues,
// tables), Log Analytics + Application Insights (Entra auth only) and an RBAC Key Vault for secrets
// and for the RSA key that wraps the data keys of stored credentials (TOKEN_ENCRYPTION_KEY).
//
// Scope: resource group. `azd up` asks for (or creates) the group; by hand:
//   az deployment group create -g <rg> -f infra/main.bicep -p environmentName=<env> manageApiKey=<key> ...
// Plain `resource` declarations only (no registry modules), so the file parses and builds offline.

targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region of all resources. Must offer Flex Consumption (az functionapp list-flexconsumption-locations).')
@metadata({ azd: { type: 'location' } })
param location string = resourceGroup().location

@description('Object id of the operator (user or group) to grant Key Vault Secrets Officer and queue access; empty grants nothing.')
param principalId string = ''

@allowed(['User', 'Group', 'ServicePrincipal'])
@description('Kind of principal that principalId names.')
param principalType string = 'User'

@secure()
@minLength(32)
@description('Bearer token for /api/manage/... (stored in Key Vault as manage-api-key).')
param manageApiKey string

@description('Client (application) id of the Entra app used to refresh ADO OAuth tokens; empty for PAT-only setups.')
param adoClientId string = ''

@secure()
@description('Client secret of that app (stored in Key Vault as ado-client-secret); empty for PAT-only setups.')
param adoClientSecret string = ''

@description('Token refresh endpoint. Use a tenant id instead of common for a single-tenant app.')
param adoTokenUrl string = 'https://login.microsoftonline.com/common/oauth2/v2.0/token'

@description('Base-URL lookup of an ADO organization; {account_id} is substituted.')
param adoAccountLookupUrl string = 'https://app.vssps.visualstudio.com/_apis/resourceareas/79134C72-4A58-4B42-976C-04E7115F32BF?hostId={account_id}&api-preview=5.0-preview.1'

@description('Work-item search endpoint; {account_name} is substituted.')
param adoSearchUrl string = 'https://almsearch.dev.azure.com/{account_name}/_apis/search/workitemsearchresults'

@description('Graph users endpoint for outbound assignment; {account_name} is substituted.')
param adoGraphUsersUrl string = 'https://vssps.dev.azure.com/{account_name}/_apis/graph/users'

@description('Azure DevOps Server hosts (comma-separated host[:port]) integrations may use; empty allows Azure DevOps Services only.')
param adoServerHosts string = ''

@allowed([2048, 3072, 4096])
@description('RSA size of the token encryption key. Key Vault allows about 4,000 (2048), 1,000 (3072) or 500 (4096) unwraps per 10 s per vault. Applies when the key is first created.')
param tokenKeySize int = 3072

@description('NCRONTAB (six fields, UTC) of the subscription-check kickoff timer.')
param subscriptionSchedule string = '0 0 */6 * * *'

@minValue(40)
@maxValue(1000)
@description('Upper bound of Flex Consumption instances.')
param maximumInstanceCount int = 100

var resourceToken = toLower(uniqueString(resourceGroup().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var queueNames = [
  'subscription-check'
  'subscription-check-poison'
  'migrate-repo'
  'migrate-repo-poison'
  'sync-outbound'
  'sync-outbound-poison'
  'tracker-events'
  'tracker-events-poison'
]
var manageApiKeySecretName = 'manage-api-key'
var adoClientSecretSecretName = 'ado-client-secret'
var tokenKeyName = 'token-encryption-key'

// Built-in role definition ids.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficer = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
var keyVaultCryptoServiceEncryptionUser = 'e147488a-f6f5-4113-8e2d-b22465e65bf6'
var keyVaultCryptoOfficer = '14b46e9e-c2b7-41b4-b07b-48a6ebf60603'

// ---------------------------------------------------------------- identity

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

// ---------------------------------------------------------------- storage

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

// ---------------------------------------------------------------- monitoring

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
  }
}

// ---------------------------------------------------------------- key vault

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

resource manageApiKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: keyVault
  name: manageApiKeySecretName
  properties: { value: manageApiKey }
}

// Only with an OAuth app: an empty secret stays unset (config.py treats '' as unset).
resource adoClientSecretSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(adoClientSecret)) {
  parent: keyVault
  name: adoClientSecretSecretName
  properties: { value: adoClientSecret }
}

// Wraps and unwraps the per-credential data keys of stored tokens and PATs (envelope encryption).
// ARM only creates it (create-if-not-exists: a redeploy never adds a version or changes it);
// rotation adds versions with the CLI, see docs/security.md.
resource tokenKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  parent: keyVault
  name: tokenKeyName
  properties: {
    kty: 'RSA'
    keySize: tokenKeySize
    keyOps: [
      'wrapKey'
      'unwrapKey'
    ]
  }
}

// ---------------------------------------------------------------- role assignments (app identity)

resource blobOwnerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource metricsPublisherAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsUserAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Wrap/unwrap (and read the public key) with the token key only: no decrypt, sign or key management,
// and no access to any other key.
resource tokenKeyUserAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(tokenKey.id, identity.id, keyVaultCryptoServiceEncryptionUser)
  scope: tokenKey
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCryptoServiceEncryptionUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---------------------------------------------------------------- role assignments (operator, optional)

resource operatorSecretsOfficerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(keyVault.id, principalId, keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficer)
    principalId: principalId
    principalType: principalType
  }
}

// To rotate the token key (new versions) and disable old versions.
resource operatorCryptoOfficerAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(tokenKey.id, principalId, keyVaultCryptoOfficer)
  scope: tokenKey
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCryptoOfficer)
    principalId: principalId
    principalType: principalType
  }
}

resource operatorQueueContributorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(storage.id, principalId, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: principalId
    principalType: principalType
  }
}

// ---------------------------------------------------------------- function app

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
  dependsOn: [
    deploymentContainer
    blobOwnerAssignment
  ]
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: functionApp
  name: 'appsettings'
  properties: {
    // Host and app storage by identity (no keys; the account refuses shared-key access).
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identity.properties.clientId
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
    // DefaultAzureCredential picks the user-assigned identity.
    AZURE_CLIENT_ID: identity.properties.clientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
    // The bundle's own settings (README "Settings").
    MANAGE_API_KEY: '@Microsoft.KeyVault(SecretUri=${manageApiKeySecret.properties.secretUri})'
    WEBHOOK_URL: 'https://${functionApp.properties.defaultHostName}/api/vsts/issue-updated'
    ADO_CLIENT_ID: adoClientId
    ADO_CLIENT_SECRET: empty(adoClientSecret) ? '' : '@Microsoft.KeyVault(SecretUri=${keyVault.properties.vaultUri}secrets/${adoClientSecretSecretName}/)'
    ADO_TOKEN_URL: adoTokenUrl
    ADO_ACCOUNT_LOOKUP_URL: adoAccountLookupUrl
    ADO_SEARCH_URL: adoSearchUrl
    ADO_GRAPH_USERS_URL: adoGraphUsersUrl
    SUBSCRIPTION_SCHEDULE: subscriptionSchedule
    ADO_SERVER_HOSTS: adoServerHosts
    // Unversioned: new seals use the key's current version; envelopes record the version they used.
    TOKEN_ENCRYPTION_KEY: tokenKey.properties.keyUri
  }
  dependsOn: [
    adoClientSecretSecret
    secretsUserAssignment
    tokenKeyUserAssignment
    queueContributorAssignment
    tableContributorAssignment
    metricsPublisherAssignment
    queues
  ]
}

// ---------------------------------------------------------------- outputs (azd stores them in .azure/<env>/.env)

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = subscription().tenantId
output AZURE_FUNCTION_NAME string = functionApp.name
output AZURE_FUNCTION_URL string = 'https://${functionApp.properties.defaultHostName}'
output WEBHOOK_URL string = 'https://${functionApp.properties.defaultHostName}/api/vsts/issue-updated'
output AZURE_STORAGE_ACCOUNT_NAME string = storage.name
output AZURE_KEY_VAULT_NAME string = keyVault.name
output AZURE_USER_ASSIGNED_IDENTITY_CLIENT_ID string = identity.properties.clientId
